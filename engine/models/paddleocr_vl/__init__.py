"""PaddleOCR-VL through transformers' native classes (see ``adapter``)."""

from .adapter import PaddleOcrVlAdapter

__all__ = ["PaddleOcrVlAdapter"]
