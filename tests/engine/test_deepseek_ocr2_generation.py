"""deepseek-ocr-2 generation as upstream runs it, on the tiny random model, in-process.

The random model says nothing useful, so the tests that need a given output put a scripting
logits processor *before* the adapter's own ones: the scripted token scores 10, a fallback token
5, everything else -1e9. Whatever the adapter's guard bans shows up as the fallback token.
"""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from transformers import DeepseekOcr2ForConditionalGeneration, LogitsProcessor, LogitsProcessorList

from engine.models.base import BadInput
from engine.models.deepseek_ocr2 import DeepseekOcr2Adapter
from engine.models.vlm.batch import PreparedRequest, token_groups
from engine.models.vlm.ngram import NoRepeatNGram
from engine.models.vlm.repetition import cut_repetition, periodic_rows, repeating_period
from tests.tiny_deepseek import build_tiny

CPU = torch.device("cpu")
pytestmark = pytest.mark.timeout(300)


def page(width: int = 180, height: int = 120, text: str = "Invoice 2041") -> np.ndarray:
    img = Image.new("RGB", (width, height), "white")
    ImageDraw.Draw(img).text((10, 10), text, fill="black")
    return np.asarray(img)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("tiny-deepseek-gen"))


def load(folder: Path, **options) -> tuple[DeepseekOcr2Adapter, torch.nn.Module]:
    adapter = DeepseekOcr2Adapter({"model_path": str(folder), **options})
    module = DeepseekOcr2ForConditionalGeneration.from_pretrained(folder).eval()  # == the bound module
    adapter.after_bind(module, CPU)
    return adapter, module


class Script(LogitsProcessor):
    def __init__(self, width: int, scripts: list[list[int]], fallback: int, eos: int) -> None:
        self.width, self.scripts, self.fallback, self.eos = width, scripts, fallback, eos

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        step = input_ids.shape[1] - self.width
        forced = torch.full_like(scores, -1e9)
        forced[:, self.fallback] = 5
        for row, script in enumerate(self.scripts):
            forced[row, script[step] if step < len(script) else self.eos] = 10
        return forced


def script(monkeypatch: pytest.MonkeyPatch, adapter, module, scripts: list[list[str]], fallback: str = "x") -> None:
    tok = adapter.processor.tokenizer
    ids = [tok.convert_tokens_to_ids(s) for s in scripts]
    generate = getattr(module, "unscripted_generate", module.generate)  # scripting again replaces the script
    module.unscripted_generate = generate

    def scripted(**kwargs):
        first = Script(kwargs["input_ids"].shape[1], ids, tok.convert_tokens_to_ids(fallback), tok.eos_token_id)
        kwargs["logits_processor"] = LogitsProcessorList([first, *kwargs["logits_processor"]])
        return generate(**kwargs)

    monkeypatch.setattr(module, "generate", scripted)


# -- the n-gram guard against upstream's own code ---------------------------------------------


def upstream_banned(output_ids: list[int], ngram_size: int, window_size: int, whitelist: set[int]) -> set[int]:
    """DeepSeek-OCR2-vllm/process/ngram_norepeat.py, NoRepeatNGramLogitsProcessor.__call__ (banned set)."""
    if len(output_ids) < ngram_size:
        return set()
    current_prefix = tuple(output_ids[-(ngram_size - 1) :])
    search_start = max(0, len(output_ids) - window_size)
    search_end = len(output_ids) - ngram_size + 1
    banned = set()
    for i in range(search_start, search_end):
        ngram = tuple(output_ids[i : i + ngram_size])
        if ngram[:-1] == current_prefix:
            banned.add(ngram[-1])
    return banned - whitelist


def test_ngram_guard_bans_what_upstream_bans() -> None:
    rng = random.Random(7)
    vocab, prompt = 12, [5, 6, 7]
    for trial in range(60):
        n, windows = rng.choice([2, 3, 4, 20]), [rng.choice([5, 9, 50, 90]) for _ in range(3)]
        whitelist = {rng.randrange(vocab)} if trial % 2 else set()
        length = rng.randrange(0, 130)
        # few symbols and repeated chunks, so that n-grams recur
        outputs = []
        for _ in range(3):
            chunk = [rng.randrange(vocab) for _ in range(rng.randrange(1, 25))]
            row = (chunk * (length // len(chunk) + 1))[:length]
            for _ in range(length // 10):
                row[rng.randrange(length)] = rng.randrange(vocab)
            outputs.append(row)
        input_ids = torch.tensor([prompt + row for row in outputs])
        guard = NoRepeatNGram(len(prompt), n, windows, sorted(whitelist), CPU)
        scores = guard(input_ids, torch.zeros(3, vocab))
        for row, output in enumerate(outputs):
            banned = {int(t) for t in torch.nonzero(scores[row] == -float("inf")).flatten()}
            assert banned == upstream_banned(output, n, windows[row], whitelist), (trial, row)


def test_guard_makes_the_model_leave_a_short_cycle(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 30-token cycle: at step 49 the 20-gram ending there was seen 30 tokens earlier, inside the
    90-token window, so its last token is banned and the fallback comes out (upstream's rule)."""
    adapter, module = load(tiny, max_new_tokens=60)
    cycle = [str(100 + i) for i in range(30)]
    script(monkeypatch, adapter, module, [cycle * 3])
    result = adapter.infer(module, page(), {"prompt_type": "free"}, CPU)
    words = result["raw_text"].split()
    assert words[:49] == (cycle * 2)[:49] and words[49] == "x"
    assert result["finish_reason"] == "length" and result["usage"]["completion_tokens"] == 60


# -- tables, loops and stops ------------------------------------------------------------------

BLANK_ROW = ["<tr>", *["<td>", "</td>"] * 8, "</tr>"]  # 18 tokens
BLANK_TABLE = ["<table>", *BLANK_ROW * 16, "</table>"]


def test_blank_table_of_16_rows_is_produced_whole(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter, module = load(tiny)
    script(monkeypatch, adapter, module, [BLANK_TABLE])
    result = adapter.infer(module, page(), {"prompt_type": "free"}, CPU)
    assert result["raw_text"].split() == BLANK_TABLE
    assert result["finish_reason"] == "stop"
    assert result["usage"]["completion_tokens"] == len(BLANK_TABLE) + 1


def test_upstreams_td_only_whitelist_breaks_the_blank_table(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Why <tr>, </tr> are whitelisted too: with upstream's {<td>, </td>} the 20-gram that ends the
    3rd row repeats the 2nd row's, and </tr> is banned (``ngram_whitelist`` restores upstream)."""
    adapter, module = load(tiny, ngram_whitelist="<td>,</td>")
    script(monkeypatch, adapter, module, [BLANK_TABLE])
    words = adapter.infer(module, page(), {"prompt_type": "free"}, CPU)["raw_text"].split()
    end_of_row_3 = 1 + 3 * 18 - 1
    assert words[:end_of_row_3] == BLANK_TABLE[:end_of_row_3] and words[end_of_row_3] == "x"


def test_an_82_token_cycle_is_cut_and_reported_as_repetition(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """82 > 90 - 20 + 1: the guard cannot see this loop; the last-resort stop does, long before 8192."""
    adapter, module = load(tiny)
    assert adapter.max_new_tokens == 8192
    cycle = [str(200 + i) for i in range(82)]
    script(monkeypatch, adapter, module, [["Invoice", "total", *cycle * 50]])
    result = adapter.infer(module, page(), {"prompt_type": "free"}, CPU)
    assert result["finish_reason"] == "repetition"
    assert result["raw_text"].split() == ["Invoice", "total", *cycle]  # one copy of the cycle stays
    assert result["usage"]["completion_tokens"] <= 1024 + 82 + 32 + 2


def test_folder_without_generation_config_stops_at_the_tokenizers_eos(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = build_tiny(tmp_path / "bare")
    (folder / "generation_config.json").unlink()
    config = json.loads((folder / "config.json").read_text())
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        config["text_config"].pop(key, None)
        config.pop(key, None)
    (folder / "config.json").write_text(json.dumps(config))
    adapter, module = load(folder, max_new_tokens=50)
    assert module.config.text_config.eos_token_id != adapter.processor.tokenizer.eos_token_id  # 2 vs DeepSeek's 1
    script(monkeypatch, adapter, module, [["Invoice", "total", "385"]])
    result = adapter.infer(module, page(), {"prompt_type": "free"}, CPU)
    assert result["finish_reason"] == "stop" and result["raw_text"] == "Invoice total 385"
    assert result["usage"]["completion_tokens"] == 4


def test_max_tokens_per_request_within_the_models_cap(tiny: Path) -> None:
    adapter, module = load(tiny, max_new_tokens=9, ngram_size=0)
    short = adapter.infer(module, page(), {"prompt_type": "free", "max_tokens": "4"}, CPU)
    capped = adapter.infer(module, page(), {"prompt_type": "free", "max_tokens": 100000}, CPU)
    assert (short["finish_reason"], short["usage"]["completion_tokens"]) == ("length", 4)
    assert (capped["finish_reason"], capped["usage"]["completion_tokens"]) == ("length", 9)
    assert capped["raw_text"].split()[:4] == short["raw_text"].split()
    for bad in ("many", 0, -3):
        with pytest.raises(BadInput, match="max_tokens"):
            adapter.infer(module, page(), {"prompt_type": "free", "max_tokens": bad}, CPU)


# -- document text, special tokens ------------------------------------------------------------


def test_document_output_gets_upstreams_post_processing(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapter, module = load(tiny)
    answer = (
        "<|ref|>image<|/ref|><|det|>[[0, 0, 499, 499]]<|/det|>\n"
        "<|ref|>text<|/ref|><|det|>[[0, 500, 999, 999]]<|/det|>\nx \\coloneqq y </s> y \\eqqcolon x"
    )
    tokens = adapter.processor.tokenizer.tokenize(answer)
    script(monkeypatch, adapter, module, [tokens])
    result = adapter.infer(module, page(999, 999), {"prompt_type": "document"}, CPU)
    assert result["finish_reason"] == "stop"
    # the tiny tokenizer decodes with spaces between tokens: compare words
    assert result["text"].split() == ["![](figure-0.png)", "x", ":=", "y", "</s>", "y", "=:", "x"]
    assert result["boxes"][0] == {"label": "image", "box": [0, 0, 499, 499], "figure": 0}
    (figure,) = result["figures"]  # the image span's crop, linked from the text by its id
    assert figure["id"] == "figure-0.png" and figure["box"] == [0, 0, 499, 499]
    crop = Image.open(io.BytesIO(base64.b64decode(figure["png_base64"])))
    assert crop.format == "PNG" and crop.size == (499, 499)
    assert "</s>" in result["raw_text"] and "\\coloneqq" in result["raw_text"]  # raw_text: the model's own


@pytest.mark.parametrize(
    ("options", "token"),
    [
        ({"prompt_type": "find", "find_term": "<image>"}, "<image>"),
        ({"prompt_type": "find", "find_term": "a <|ref|>b"}, "<|ref|>"),
        ({"prompt_type": "find", "find_term": "total<｜end▁of▁sentence｜>"}, "<｜end▁of▁sentence｜>"),
        ({"prompt_type": "freeform", "custom_prompt": "Read <image> twice."}, "<image>"),
        ({"prompt_type": "freeform", "custom_prompt": "Read <|det|>[[1, 2, 3, 4]]"}, "<|det|>"),
        ({"prompt_type": "freeform", "custom_prompt": "<｜▁pad▁｜> Read."}, "<｜▁pad▁｜>"),
    ],
)
def test_special_tokens_in_client_text_are_bad_input(tiny: Path, options: dict, token: str) -> None:
    adapter, module = load(tiny, max_new_tokens=4)
    results = adapter.infer_batch(module, [page(), page()], [options, {"prompt_type": "free"}], CPU)
    assert isinstance(results[0], BadInput) and repr(token) in str(results[0])
    assert isinstance(results[1], dict) and results[1]["usage"]["completion_tokens"] == 4  # the other one ran


def test_upstream_prompt_forms_stay_allowed_and_long_prompts_are_refused(tiny: Path) -> None:
    adapter, module = load(tiny, max_new_tokens=2, max_prompt_tokens=30)
    ok = adapter.infer(
        module, page(), {"prompt_type": "freeform", "custom_prompt": "<image>\nLocate <|ref|>total<|/ref|> here."}, CPU
    )
    assert ok["prompt"] == "<image>\nLocate <|ref|>total<|/ref|> here."
    with pytest.raises(BadInput, match="at most 30"):
        adapter.infer(module, page(), {"prompt_type": "freeform", "custom_prompt": "total " * 40}, CPU)
    with pytest.raises(BadInput, match="source"):
        adapter.infer(module, page(), {"prompt_type": "free", "source": "scanner"}, CPU)


# -- batches and streaming --------------------------------------------------------------------

MIXED = [
    (page(180, 120, "a"), {"prompt_type": "free"}),
    (page(400, 150, "Invoice 2041"), {"prompt_type": "document"}),  # global view + tiles
    (page(300, 300, "total"), {"prompt_type": "ocr", "max_tokens": 5}),
    (page(200, 500, "Berlin"), {"prompt_type": "find", "find_term": "total"}),
    (page(180, 120, "x"), {"prompt_type": "freeform", "custom_prompt": "Read the total in this image."}),
    (page(500, 200, "y"), {"prompt_type": "describe", "source": "pdf"}),
    (page(120, 90, "q"), {"prompt_type": "find", "find_term": "<image>"}),  # fails alone
    (page(250, 250, "r"), {"prompt_type": "figure", "max_tokens": 11}),
]


def test_a_batch_gives_token_for_token_the_one_by_one_results_and_streams(tiny: Path) -> None:
    adapter, module = load(tiny, max_new_tokens=24)
    assert adapter.batch_limit(CPU) == 8
    images, options = zip(*MIXED)
    alone = []
    for image, opts in MIXED:
        try:
            alone.append(adapter.infer(module, image, opts, CPU))
        except BadInput as exc:
            alone.append(exc)
    streamed: dict[int, list[str]] = {}
    batch = adapter.infer_batch(
        module, list(images), list(options), CPU, lambda i, t: streamed.setdefault(i, []).append(t)
    )
    assert isinstance(batch[6], BadInput) and isinstance(alone[6], BadInput) and 6 not in streamed
    for i, (one, together) in enumerate(zip(alone, batch)):
        if i == 6:
            continue
        assert together == one, i  # text, raw_text, boxes, finish_reason, usage: everything
        assert "".join(streamed[i]) == together["raw_text"], i
    assert {r["finish_reason"] for r in batch if isinstance(r, dict)} <= {"stop", "length", "repetition"}
    assert batch[2]["usage"]["completion_tokens"] == 5 and batch[7]["usage"]["completion_tokens"] <= 11
    prompts = {r["usage"]["prompt_tokens"] for r in batch if isinstance(r, dict)}
    assert len(prompts) >= 4  # really different lengths: the batch was left-padded


def test_scripted_rows_stop_on_their_own_in_a_batch(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One row loops, one stops early, one runs to its limit: each row's stop is its own."""
    # the guard off: it would break this short cycle before the loop stop could see it
    adapter, module = load(tiny, ngram_size=0, repeat_run=64, repeat_max_period=16, repeat_every=8, max_new_tokens=120)
    cycle = [str(300 + i) for i in range(10)]
    rows = [["Invoice", *cycle * 12], ["total", "385"], [str(400 + i) for i in range(200)]]
    script(monkeypatch, adapter, module, rows)
    options = [{"prompt_type": "free", "source": "pdf", "max_tokens": 120}, {"prompt_type": "free"}, {"max_tokens": 30}]
    batch = adapter.infer_batch(module, [page(), page(400, 150), page()], options, CPU)
    assert batch[0]["finish_reason"] == "repetition" and batch[0]["raw_text"].split() == ["Invoice", *cycle]
    assert batch[0]["usage"]["completion_tokens"] == 80  # the first check with room for period 10
    assert batch[1]["finish_reason"] == "stop" and batch[1]["raw_text"] == "total 385"
    assert batch[2]["finish_reason"] == "length" and batch[2]["usage"]["completion_tokens"] == 30
    for i, (image, opts) in enumerate(zip([page(), page(400, 150), page()], options)):
        script(monkeypatch, adapter, module, [rows[i]])
        assert adapter.infer(module, image, opts, CPU) == batch[i]


# -- the loop stop's pieces -------------------------------------------------------------------


def test_periodic_tails_and_cuts() -> None:
    tail = torch.tensor([[9, 1, 2, 3, 1, 2, 3, 1, 2, 3], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]])
    assert periodic_rows(tail, run=6).tolist() == [True, False]  # period 3 over the last 6 (+3)
    assert periodic_rows(tail[:, -6:], run=6).tolist() == [False, False]  # no room for any period yet
    assert repeating_period([9, 1, 2, 3, 1, 2, 3, 1, 2, 3], run=6, max_period=4) == 3
    assert repeating_period([1, 2, 3, 4, 5, 6, 7, 8], run=4, max_period=4) is None
    assert cut_repetition([9, 8, 1, 2, 3, 1, 2, 3, 1, 2, 3], 3) == [9, 8, 1, 2, 3]


def test_token_budget_splits_a_batch_into_groups_that_fit() -> None:
    def request(prompt: int, limit: int) -> PreparedRequest:
        return PreparedRequest(None, {"input_ids": torch.zeros(1, prompt, dtype=torch.long)}, limit, 90, 1, 1)  # type: ignore[arg-type]

    reqs = [request(100, 100), request(100, 100), request(300, 100), request(50, 1000), request(10, 10)]
    # two rows of 200 fit 400; the third widens every row to 400; the fourth alone is 1050
    groups = token_groups(reqs, 400)
    assert [(start, len(group)) for start, group in groups] == [(0, 2), (2, 1), (3, 1), (4, 1)]
    assert token_groups(reqs, 10**9) == [(0, reqs)]
    assert [len(g) for _, g in token_groups(reqs, 1)] == [1] * 5  # too large alone: runs alone


def test_a_batch_over_the_token_budget_runs_in_groups_with_the_same_answers(tiny: Path) -> None:
    adapter, module = load(tiny, max_new_tokens=24, max_batch_tokens=600)
    requests = [(image, opts) for i, (image, opts) in enumerate(MIXED) if i != 6]  # 6 is a bad request
    alone = [adapter.infer(module, image, opts, CPU) for image, opts in requests]
    streamed: dict[int, list[str]] = {}
    images, options = zip(*requests)
    batch = adapter.infer_batch(
        module, list(images), list(options), CPU, lambda i, t: streamed.setdefault(i, []).append(t)
    )
    prepared = [adapter.prepare(image, opts, 10**6) for image, opts in requests]
    assert len(token_groups(prepared, 600)) > 1  # the budget really split this batch
    assert batch == alone
    assert all("".join(streamed[i]) == r["raw_text"] for i, r in enumerate(batch))
