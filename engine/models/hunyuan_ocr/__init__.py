"""HunyuanOCR through transformers' native classes (see ``adapter``)."""

from .adapter import HunyuanOcrAdapter

__all__ = ["HunyuanOcrAdapter"]
