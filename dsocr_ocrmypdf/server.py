"""The few calls the plugin makes to a dsocr server, with the standard library only (OCRmyPDF's
workers are processes: each opens its own connections)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrmypdf.exceptions import ExitCode, ExitCodeException


class ServerUnavailable(RuntimeError):
    """Nothing answers at the URL."""


class ServerRefused(ExitCodeException):
    """The server answered a page with an error (OCRmyPDF reports it and stops with this code)."""

    exit_code = ExitCode.child_process_error


@dataclass(frozen=True)
class DsocrServer:
    url: str
    model: str | None = None
    api_key: str | None = None
    timeout: float = 300.0

    @classmethod
    def from_options(cls, options: Any) -> DsocrServer:
        d = options.dsocr
        return cls(d.url.rstrip("/"), d.model, d.api_key, d.timeout)

    def _request(self, path: str, body: bytes | None = None, content_type: str = "") -> dict[str, Any]:
        headers = {"Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=body, headers=headers, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            try:
                message = json.loads(exc.read()).get("error", "")
            except ValueError:
                message = exc.reason
            raise ServerRefused(f"dsocr server at {self.url}: HTTP {exc.code}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise ServerUnavailable(f"no dsocr server answers at {self.url} ({getattr(exc, 'reason', exc)})") from None

    def models(self) -> list[str]:
        status = self._request("/gpu/status")
        return [m["model"] for m in status.get("models", [])]

    def ocr(self, image: Path) -> dict[str, Any]:
        """The ``/ocr`` answer (lines, words, rotation) for one page image."""
        boundary = uuid.uuid4().hex
        parts = []
        fields = {"prompt_type": "ocr", **({"model": self.model} if self.model else {})}
        for name, value in fields.items():
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{image.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n".encode()
        )
        parts.append(image.read_bytes())
        parts.append(f"\r\n--{boundary}--\r\n".encode())
        return self._request("/ocr", b"".join(parts), f"multipart/form-data; boundary={boundary}")
