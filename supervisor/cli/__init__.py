"""The ``dsocr`` command (``main``), its HTTP client, and local OCR without a server. Imports any
supervisor package; nothing imports it.
"""
