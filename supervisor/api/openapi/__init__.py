"""``/openapi.json`` and ``/docs`` (Swagger UI, vendored in ``docs_ui``)."""
