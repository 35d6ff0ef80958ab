"""The pipe protocol: every message survives a round trip, and every malformed frame is refused."""

from __future__ import annotations

import struct

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipc import protocol as p

PREFIX = struct.Struct(">2sBI")
# every byte value, a NUL and invalid UTF-8: a payload that JSON could not carry as it is
BINARY = bytes(range(256)) + b"\x89PNG\r\n\x1a\n\x00\xff\xfe" * 100

MESSAGES: list[p.Message] = [
    p.Load(1, "synthetic", "dsocr_1_synthetic", "cpu", {"gb": 0.01, "dir": "/tmp/x"}),
    p.Load(2, "ppocr", "dsocr_1_ppocr", "cuda:0"),
    p.Restore(3, "ppocr", "dsocr_1_ppocr", "auto", {"pin": False}),
    p.Offload(4, "ppocr"),
    p.Infer.one(5, "ppocr", {"prompt_type": "ocr", "ünïcode": "文字"}, BINARY),
    p.Infer(6, "ppocr"),  # no image at all
    p.Infer(7, "ppocr", [{}, {"prompt_type": "free"}], images=[BINARY, b""], stream=True),
    p.Stats(8),
    p.Shutdown(9),
    p.Reply(10, p.Kind.INFER, result={"text": "héllo", "lines": [{"box": [[0, 0]], "score": 0.5}]}),
    p.Reply(11, p.Kind.LOAD, error=p.WireError(p.WireError.OUT_OF_MEMORY, "no room")),
    p.Reply(12, p.Kind.SHUTDOWN, result={}),
]


def frame(header: object, payload: bytes = b"", magic: bytes = p.MAGIC, version: int = p.VERSION) -> bytes:
    raw = orjson.dumps(header)
    return PREFIX.pack(magic, version, len(raw)) + raw + payload


@pytest.mark.parametrize("msg", MESSAGES, ids=lambda m: f"{m.kind.value}-{m.id}")
def test_round_trip(msg: p.Message) -> None:
    back = p.decode(p.encode(msg))
    assert type(back) is type(msg)
    assert back == msg


def test_reply_error_and_result_helpers() -> None:
    req = p.Infer.one(42, "ppocr", image=b"x")
    bad = p.decode(p.encode(p.reply_error(req, p.WireError.BAD_INPUT, "not an image")))
    assert isinstance(bad, p.Reply)
    assert (bad.id, bad.request, bad.ok, bad.result) == (42, p.Kind.INFER, False, None)
    assert bad.error == p.WireError("bad_input", "not an image")
    good = p.decode(p.encode(p.reply_ok(req, text="ok")))
    assert isinstance(good, p.Reply) and good.ok and good.result == {"text": "ok"}


def test_payload_travels_after_the_header_not_inside_it() -> None:
    image = b"\x00PAYLOAD-MARKER\xff" * 1000
    data = p.encode(p.Infer.one(1, "ppocr", {"prompt_type": "ocr"}, image))
    magic, version, header_len = PREFIX.unpack_from(data)
    header = data[PREFIX.size : PREFIX.size + header_len]
    assert (magic, version) == (p.MAGIC, p.VERSION)
    assert b"PAYLOAD-MARKER" not in header and len(header) < 200
    assert "images" not in orjson.loads(header)
    assert data[PREFIX.size + header_len :] == image


def test_oversized_frame_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(p, "MAX_FRAME_BYTES", 1000)
    with pytest.raises(p.ProtocolError, match="exceeds"):
        p.encode(p.Infer.one(1, "ppocr", image=b"x" * 1000))


GOOD_HEADER = {"id": 1, "kind": "offload", "model": "ppocr"}

MALFORMED = {
    "empty": b"",
    "short prefix": b"DS\x01\x00",
    "bad magic": frame(GOOD_HEADER, magic=b"XX"),
    "bad version": frame(GOOD_HEADER, version=p.VERSION + 1),
    "truncated header": frame(GOOD_HEADER)[:-3],
    "header not json": PREFIX.pack(p.MAGIC, p.VERSION, 5) + b"{nope",
    "header a list": frame([1, 2]),
    "header a string": frame("offload"),
    "header a number": frame(7),
    "no kind": frame({"id": 1, "model": "ppocr"}),
    "unknown kind": frame({"id": 1, "kind": "explode"}),
    "missing field": frame({"id": 1, "kind": "load", "model": "ppocr"}),
    "unknown field": frame({**GOOD_HEADER, "colour": "red"}),
    "kind field not a string": frame({"id": 1, "kind": ["offload"], "model": "x"}),
    "reply without request": frame({"id": 1, "kind": "reply", "result": {}}),
    "reply of unknown request": frame({"id": 1, "kind": "reply", "request": "explode", "result": {}}),
    "reply error not an object": frame({"id": 1, "kind": "reply", "request": "infer", "error": "boom"}),
    "reply error without type": frame({"id": 1, "kind": "reply", "request": "infer", "error": {"message": "m"}}),
}


@pytest.mark.parametrize("data", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_frames_raise_protocol_error(data: bytes) -> None:
    # Anything else (KeyError, AttributeError...) would kill the reader thread of the engine or of
    # the supervisor's handle instead of dropping one frame.
    with pytest.raises(p.ProtocolError):
        p.decode(data)


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(p.ProtocolError, ValueError)


SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False)
JSON = st.recursive(
    SCALARS | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
KEYS = st.sampled_from(["id", "kind", "model", "segment", "device", "options", "request", "result", "error"])
HEADERS = st.dictionaries(KEYS, JSON | st.sampled_from([k.value for k in p.Kind]), max_size=6)


@settings(max_examples=300, deadline=None)
@given(header=HEADERS | JSON, payload=st.binary(max_size=16))
def test_decode_raises_only_protocol_error(header: object, payload: bytes) -> None:
    """Whatever header arrives, decode gives a message or a ProtocolError: the reader lives on."""
    try:
        msg = p.decode(frame(header, payload))
    except p.ProtocolError:
        return
    assert isinstance(msg, p.Message)


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64))
def test_decode_of_random_bytes(data: bytes) -> None:
    try:
        assert isinstance(p.decode(data), p.Message)
    except p.ProtocolError:
        pass
