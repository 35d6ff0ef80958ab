"""GLM-OCR through transformers' native classes (see ``adapter``)."""

from .adapter import GlmOcrAdapter

__all__ = ["GlmOcrAdapter"]
