"""deepseek-ocr-2 through a real engine process: one Infer of 8 mixed requests, streamed, against
the same requests sent one by one (EngineHandle + Load + Infer of one and of eight, the tiny random model)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ipc import protocol as p
from ipc.errors import only_result
from ipc.weights import unlink_segment
from supervisor.core.engine_handle import EngineFailure, EngineHandle
from tests.helpers import SegmentGuard, pid_gone, shm  # noqa: F401  (shm is a fixture)
from tests.tiny_deepseek import MIXED_REQUESTS, build_tiny

MODEL = "deepseek-ocr-2"
TIMEOUT = 120.0
pytestmark = pytest.mark.timeout(300)
# one of them as a PDF page: upstream's narrower repetition window
REQUESTS = [(image, {**opts, "source": "pdf"} if i == 5 else opts) for i, (image, opts) in enumerate(MIXED_REQUESTS)]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny-deepseek-engine"))


@pytest.fixture
async def engine(tiny: Path, shm: SegmentGuard) -> AsyncIterator[EngineHandle]:
    handle = EngineHandle(log_level="WARNING", boot_timeout=TIMEOUT, threads=1)
    segment = shm.name("deepseek")
    try:
        await handle.spawn()
        options = {"model_path": str(tiny), "max_new_tokens": 20}
        await handle.request(p.Load(0, MODEL, segment, "cpu", options), timeout=TIMEOUT)
        yield handle
    finally:
        await handle.kill()
        unlink_segment(segment)  # the supervisor's job: it owns the segments
        assert handle.pid is None or pid_gone(handle.pid)


async def test_batch_through_the_engine_is_token_for_token_one_by_one_and_streams(engine: EngineHandle) -> None:
    alone = [
        (only_result(await engine.request(p.Infer.one(0, MODEL, opts, image), timeout=TIMEOUT)))
        for image, opts in REQUESTS
    ]
    streamed: dict[int, list[str]] = {}
    reply = await engine.request(
        p.Infer(0, MODEL, [opts for _, opts in REQUESTS], images=[image for image, _ in REQUESTS], stream=True),
        timeout=TIMEOUT,
        on_partial=lambda index, text: streamed.setdefault(index, []).append(text),
    )
    results = reply["results"]
    assert len(results) == len(REQUESTS)
    for i, (one, together) in enumerate(zip(alone, results)):
        for key in ("text", "raw_text", "boxes", "lines", "finish_reason", "usage", "prompt"):
            assert together[key] == one[key], (i, key)
        assert together["timing"]["batch"] == len(REQUESTS)
        assert "".join(streamed.get(i, [])) == together["raw_text"], i
    assert results[2]["usage"]["completion_tokens"] == 5
    assert len({r["usage"]["prompt_tokens"] for r in results}) >= 4  # left padding really happened


async def test_a_raw_upstream_folder_loads_and_answers_through_an_engine(
    engine: EngineHandle, tmp_path: Path, shm: SegmentGuard
) -> None:
    """The upstream layout (deepseek_vl_v2 config...) converted on the engine's first load, into
    the cache dir; it answers as the native folder of the same weights does."""
    raw = build_tiny(tmp_path / "raw", layout="upstream")
    image, opts = REQUESTS[1]
    expected = only_result(await engine.request(p.Infer.one(0, MODEL, opts, image), timeout=TIMEOUT))
    other = EngineHandle(log_level="WARNING", boot_timeout=TIMEOUT, threads=1)
    segment = shm.name("deepseek-raw")
    try:
        await other.spawn()
        options = {"model_path": str(raw), "max_new_tokens": 20, "cache_dir": str(tmp_path / "cache")}
        await other.request(p.Load(0, MODEL, segment, "cpu", options), timeout=TIMEOUT)
        answer = only_result(await other.request(p.Infer.one(0, MODEL, opts, image), timeout=TIMEOUT))
    finally:
        await other.kill()
        unlink_segment(segment)
    assert answer["usage"]["completion_tokens"] > 0
    assert {k: answer[k] for k in ("raw_text", "text", "usage")} == {
        k: expected[k] for k in ("raw_text", "text", "usage")
    }
    assert list((tmp_path / "cache" / MODEL).glob("*/model.safetensors"))


async def test_bad_requests_fail_alone_in_a_batch(engine: EngineHandle) -> None:
    good, _ = REQUESTS[0]
    options = [{"prompt_type": "find", "find_term": "<image>"}, {"prompt_type": "free"}, {"prompt_type": "free"}]
    reply = await engine.request(p.Infer(0, MODEL, options, images=[good, good, b"not an image"]), timeout=TIMEOUT)
    bad_term, ok, bad_image = reply["results"]
    assert bad_term["error"]["type"] == p.WireError.BAD_INPUT and "'<image>'" in bad_term["error"]["message"]
    assert ok["usage"]["completion_tokens"] > 0
    assert bad_image["error"]["type"] == p.WireError.BAD_INPUT
    with pytest.raises(EngineFailure) as info:  # alone, the same request is a bad_input reply (a 400)
        only_result(await engine.request(p.Infer.one(0, MODEL, options[0], good), timeout=TIMEOUT))
    assert info.value.type == p.WireError.BAD_INPUT
