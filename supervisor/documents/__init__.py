"""Documents: PDF pages rendered for the model, pages run through an owner, merged results, and
the output formats built from them (hOCR, ALTO, searchable PDF). Imports ``core``, ``http`` and ``ipc``.
"""
