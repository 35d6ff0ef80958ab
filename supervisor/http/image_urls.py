"""Images and PDFs given by URL in JSON requests (OpenAI's ``image_url``, Mistral's ``document_url``).

``data:`` URLs (base64) are always accepted. Remote ``http(s)`` URLs are refused unless the server
runs with ``--allow-remote-images``; even then a fetch is bounded in size and time, follows no
redirect, and never reaches loopback, private, link-local or otherwise non-public addresses: every
address a name resolves to is checked, and the connection uses only the checked addresses (a name
that resolves differently a moment later cannot slip through).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from supervisor.core.settings import Settings
from supervisor.http.errors import ClientError

REMOTE_TIMEOUT_S = 20.0
_CHUNK = 256 * 1024
REMOTE_OFF = (
    "remote image URLs are not fetched by this server: send the image as a data URL "
    "(data:image/png;base64,...) or start the server with --allow-remote-images"
)


def decode_data_url(url: str, limit: int) -> bytes:
    """The bytes of a base64 ``data:`` URL; 400 for anything else, 413 past ``limit`` bytes."""
    header, sep, payload = url.partition(",")
    if not sep or not header.lower().startswith("data:"):
        raise ClientError(400, "a data URL must look like data:<type>;base64,<data>")
    if not header.lower().endswith(";base64"):
        raise ClientError(400, "only base64 data URLs are accepted (data:<type>;base64,<data>)")
    if len(payload) * 3 // 4 > limit:
        raise ClientError(413, f"the image exceeds the limit of {limit} bytes")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(400, "the data URL's base64 payload is invalid") from None
    if not data:
        raise ClientError(400, "the data URL is empty")
    return data


def check_public(address: str) -> None:
    """400 unless ``address`` (an IP) is a public unicast address."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if not ip.is_global or ip.is_multicast:
        raise ClientError(400, f"remote image URLs may not point to a loopback, private or local address ({ip})")


class _PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp does, then refuses the name if any of its addresses is not public."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        try:
            results = await self._inner.resolve(host, port, family)
        except OSError as exc:
            raise ClientError(400, f"cannot resolve {host!r}: {exc.strerror or exc}") from None
        for result in results:
            check_public(result["host"])
        return results

    async def close(self) -> None:
        await self._inner.close()


async def fetch_remote(url: str, limit: int, timeout: float = REMOTE_TIMEOUT_S) -> bytes:
    parts = urlsplit(url)
    host = parts.hostname
    if not host:
        raise ClientError(400, f"not a valid URL: {url[:200]!r}")
    try:
        check_public(host)  # an IP literal never reaches the resolver
    except ValueError:
        pass  # a name: checked by the resolver, address by address
    connector = aiohttp.TCPConnector(resolver=_PublicOnlyResolver(), use_dns_cache=False)
    try:
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=timeout), trust_env=False
        ) as session:
            async with session.get(url, allow_redirects=False) as resp:
                if resp.status != 200:
                    raise ClientError(
                        400, f"fetching the image URL answered HTTP {resp.status} (redirects are not followed)"
                    )
                if resp.content_length is not None and resp.content_length > limit:
                    raise ClientError(413, f"the image at the URL exceeds the limit of {limit} bytes")
                chunks, size = [], 0
                async for chunk in resp.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise ClientError(413, f"the image at the URL exceeds the limit of {limit} bytes")
                    chunks.append(chunk)
    except asyncio.TimeoutError:
        raise ClientError(400, f"fetching the image URL took longer than {timeout:g}s") from None
    except aiohttp.ClientError as exc:
        raise ClientError(400, f"cannot fetch the image URL: {exc}") from None
    if not size:
        raise ClientError(400, "the image URL gave an empty body")
    return b"".join(chunks)


async def load_url(url: Any, settings: Settings) -> bytes:
    """The bytes behind an image or document URL given in a JSON request."""
    if not isinstance(url, str) or not url:
        raise ClientError(400, "the image URL must be a non-empty string")
    scheme = url.split(":", 1)[0].lower()
    if scheme == "data":
        return decode_data_url(url, settings.max_upload_bytes)
    if scheme not in ("http", "https"):
        raise ClientError(400, "an image URL must be a data: URL (or http(s) with --allow-remote-images)")
    if not settings.allow_remote_images:
        raise ClientError(400, REMOTE_OFF)
    return await fetch_remote(url, settings.max_upload_bytes)
