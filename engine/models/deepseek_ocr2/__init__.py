"""DeepSeek-OCR-2 through transformers' native classes (see ``adapter``)."""

from .adapter import DeepseekOcr2Adapter

__all__ = ["DeepseekOcr2Adapter"]
