"""PP-OCRv6-small, the embedded default OCR model (``ppocr``)."""

from .adapter import PPOCRAdapter

__all__ = ["PPOCRAdapter"]
