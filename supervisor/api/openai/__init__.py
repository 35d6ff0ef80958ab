"""OpenAI's ``/v1/models`` and ``/v1/chat/completions`` (plain and SSE), their shapes and prompts."""
