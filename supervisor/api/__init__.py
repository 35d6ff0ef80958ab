"""The API dialects. Each module registers its own routes with ``add_routes(app)``, and
``supervisor.app`` reads the table of them: native (``/ocr``, ``/ocr/stream``, ``/gpu/*``,
``/health``, the page), upstream (``/ocr-pdf``, ``/pdf-to-images``), OpenAI, Mistral, OpenAPI, and
the MCP server. Dialects import ``core``, ``http``, ``documents`` and the shared ``api.shared`` and
``api.forms``, never each other.
"""
