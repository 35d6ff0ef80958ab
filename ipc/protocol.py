"""The pipe protocol between the supervisor and the engine: every message that crosses the pipe.

A frame is ``MAGIC | version | header length | orjson header | payload``::

    b"DS" (2 bytes)  version (1 byte)  header_len (4 bytes, big endian)  header  payload

The header holds the message's kind, request id and fields; the payload carries raw bytes
(an image) that would be wasteful to put in JSON. A frame is sent whole with
``Connection.send_bytes`` and read whole with ``recv_bytes``.

Requests flow supervisor -> engine; every request is answered by exactly one :class:`Reply` with
the same id, carrying either ``result`` or ``error``. Nothing else crosses the pipe.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

MAGIC = b"DS"
VERSION = 1
_PREFIX = struct.Struct(">2sBI")
# A frame larger than this is refused before it is built or parsed (uploads are limited far below).
MAX_FRAME_BYTES = 1 << 30


class ProtocolError(ValueError):
    """A frame that is not ours, of another version, truncated or of an unknown kind."""


class Kind(str, enum.Enum):
    LOAD = "load"
    RESTORE = "restore"
    OFFLOAD = "offload"
    INFER = "infer"
    PARTIAL = "partial"
    STATS = "stats"
    SHUTDOWN = "shutdown"
    REPLY = "reply"


@dataclass
class Message:
    """Base of every message; ``kind`` names the dataclass on the wire."""

    id: int
    kind: ClassVar[Kind]

    def payload_bytes(self) -> bytes:
        return b""


@dataclass
class Load(Message):
    """unloaded -> resident: read the adapter's weights into segment ``segment``, then bind them."""

    model: str
    segment: str
    device: str
    options: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[Kind] = Kind.LOAD


@dataclass
class Restore(Message):
    """cached -> resident: attach the existing segment and bind the weights on ``device``."""

    model: str
    segment: str
    device: str
    options: dict[str, Any] = field(default_factory=dict)
    kind: ClassVar[Kind] = Kind.RESTORE


@dataclass
class Offload(Message):
    """resident -> cached: drop the module and its device memory; the segment stays."""

    model: str
    kind: ClassVar[Kind] = Kind.OFFLOAD


@dataclass
class Infer(Message):
    """Run the resident model on one or more images (one ``generate`` for a batching model).

    ``images`` travel as the payload, one after another, ``sizes`` giving each one's length. The
    reply's result is ``{"results": [...]}``, one item per image: its result, or
    ``{"error": {"type", "message"}}`` when that image alone failed. With ``stream``, the engine
    sends :class:`Partial` messages with the request's id while it generates.
    """

    model: str
    options: list[dict[str, Any]] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    stream: bool = False
    images: list[bytes] = field(default_factory=list)
    kind: ClassVar[Kind] = Kind.INFER

    def __post_init__(self) -> None:
        self.sizes = [len(image) for image in self.images]  # what the header says of the payload

    def payload_bytes(self) -> bytes:
        return b"".join(self.images)

    @classmethod
    def one(cls, id: int, model: str, options: dict[str, Any] | None = None, image: bytes = b"") -> Infer:
        """One image: its reply is read with :func:`only_result`."""
        return cls(id, model, [dict(options or {})], images=[image])


@dataclass
class Partial(Message):
    """Engine -> supervisor, not a reply: text generated so far for item ``index`` of request ``id``.

    ``text`` is the new text since the previous partial of that item; the engine coalesces tokens
    so that partials stay few (see ``engine.main``). The final reply still carries the whole text.
    """

    index: int = 0
    text: str = ""
    kind: ClassVar[Kind] = Kind.PARTIAL


@dataclass
class Stats(Message):
    """State and memory of the engine; answered even while an inference runs."""

    kind: ClassVar[Kind] = Kind.STATS


@dataclass
class Shutdown(Message):
    """Drop everything and exit; the reply is sent before the process exits."""

    kind: ClassVar[Kind] = Kind.SHUTDOWN


@dataclass
class WireError:
    """An error that crosses the pipe: ``type`` is a stable name the supervisor maps to HTTP."""

    type: str
    message: str

    # Error types the engine sends. BAD_INPUT is the client's fault (4xx), the rest are ours.
    BAD_INPUT: ClassVar[str] = "bad_input"
    UNSUPPORTED: ClassVar[str] = "unsupported"
    NOT_LOADED: ClassVar[str] = "not_loaded"
    WEIGHTS_UNAVAILABLE: ClassVar[str] = "weights_unavailable"
    OUT_OF_MEMORY: ClassVar[str] = "out_of_memory"
    NO_SPACE: ClassVar[str] = "no_space"  # ENOSPC: the disk (of the cache dir) is full
    MODEL_ERROR: ClassVar[str] = "model_error"
    PROTOCOL: ClassVar[str] = "protocol"

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WireError:
        return cls(type=str(data["type"]), message=str(data["message"]))


@dataclass
class Reply(Message):
    """The answer to request ``id`` (of kind ``request``): ``result`` or ``error``, never both."""

    request: Kind = Kind.STATS
    result: dict[str, Any] | None = None
    error: WireError | None = None
    kind: ClassVar[Kind] = Kind.REPLY

    @property
    def ok(self) -> bool:
        return self.error is None


_BY_KIND: dict[Kind, type[Message]] = {
    cls.kind: cls for cls in (Load, Restore, Offload, Infer, Partial, Stats, Shutdown, Reply)
}


def encode(msg: Message) -> bytes:
    """One frame for ``msg``; its payload (if any) travels after the JSON header, not inside it."""
    fields = {f.name: getattr(msg, f.name) for f in dataclasses.fields(msg)}
    payload = msg.payload_bytes()
    if isinstance(msg, Infer):
        fields.pop("images")
        fields["sizes"] = [len(image) for image in msg.images]
        if len(msg.options) != len(msg.images):
            raise ProtocolError(f"{len(msg.options)} option sets for {len(msg.images)} images")
    if isinstance(msg, Reply) and msg.error is not None:
        fields["error"] = msg.error.to_dict()
    fields["kind"] = msg.kind.value
    header = orjson.dumps(fields)
    size = _PREFIX.size + len(header) + len(payload)
    if size > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {size} bytes exceeds the {MAX_FRAME_BYTES} byte limit")
    return b"".join((_PREFIX.pack(MAGIC, VERSION, len(header)), header, payload))


def decode(frame: bytes) -> Message:
    """The message in ``frame``; raises :class:`ProtocolError` for anything malformed."""
    if len(frame) < _PREFIX.size:
        raise ProtocolError(f"frame of {len(frame)} bytes is shorter than its prefix")
    magic, version, header_len = _PREFIX.unpack_from(frame)
    if magic != MAGIC:
        raise ProtocolError(f"bad magic {magic!r}")
    if version != VERSION:
        raise ProtocolError(f"protocol version {version}, expected {VERSION}")
    end = _PREFIX.size + header_len
    if end > len(frame):
        raise ProtocolError("truncated header")
    # Any header that is not the object we expect (a JSON string, a reply of an unknown request, an
    # error without a type...) is a ProtocolError: a stray KeyError would kill a pipe reader thread.
    try:
        fields = orjson.loads(memoryview(frame)[_PREFIX.size : end])
        if not isinstance(fields, dict):
            raise TypeError(f"header is a JSON {type(fields).__name__}, not an object")
        cls = _BY_KIND[Kind(fields.pop("kind"))]
        if cls is Reply:
            fields["request"] = Kind(fields["request"])
            if fields.get("error") is not None:
                fields["error"] = WireError.from_dict(fields["error"])
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError) as exc:
        raise ProtocolError(f"bad header: {exc!r}") from None
    if cls is Infer:
        fields["images"] = _split_payload(frame, end, fields.get("sizes"), fields.get("options"))
    try:
        return cls(**fields)
    except TypeError as exc:
        raise ProtocolError(f"bad fields for {cls.__name__}: {exc}") from None


def _split_payload(frame: bytes, start: int, sizes: Any, options: Any) -> list[bytes]:
    if not isinstance(sizes, list) or not all(isinstance(n, int) and n >= 0 for n in sizes):
        raise ProtocolError("infer: sizes must be a list of byte counts")
    if not isinstance(options, list) or len(options) != len(sizes):
        raise ProtocolError("infer: one option set per image is needed")
    if start + sum(sizes) != len(frame):
        raise ProtocolError(f"infer: sizes add up to {sum(sizes)}, payload is {len(frame) - start} bytes")
    view, images = memoryview(frame), []
    for size in sizes:
        images.append(bytes(view[start : start + size]))
        start += size
    return images


def reply_ok(request: Message, **result: Any) -> Reply:
    return Reply(id=request.id, request=request.kind, result=result)


def reply_error(request: Message, type_: str, message: str) -> Reply:
    return Reply(id=request.id, request=request.kind, error=WireError(type_, message))
