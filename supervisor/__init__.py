"""The supervisor process: HTTP in front, engines behind, and no torch in it.

Packages, each importing only those listed before it (tests/test_import_direction.py checks):

- ``core``: the owners (one per model), the device arbiter, engine handles, the zygote client,
  the child registry, GPUs and settings. It knows nothing of HTTP.
- ``http``: server plumbing: the aiohttp server and its limits, security headers and keys, the
  upload budget, JSON bodies, error answers, uploads and remote images, readiness.
- ``documents``: PDF pages, merged results and the output formats (hOCR, ALTO, searchable PDF).
- ``api``: the dialects (native ``/ocr`` and ``/gpu/*``, the upstream routes, OpenAI, Mistral,
  MCP, OpenAPI), each registering its own routes; they share ``api.shared`` and ``api.forms``
  and never import each other.
- ``cli``: the ``dsocr`` command and its HTTP client.

``app`` builds the application from ``core``, ``http`` and the dialect table. ``web/`` holds the page.
"""
