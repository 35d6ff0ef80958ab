"""The generation layer's model-independent pieces (engine/models/vlm), without a model."""

from __future__ import annotations

import pytest
import torch

from engine.models.base import BadInput
from engine.models.vlm import GenerationDefaults, PreparedRequest, Prompt, collate
from engine.models.vlm.boxes import parse_boxes, scale_box
from engine.models.vlm.generation import finish
from engine.models.vlm.streaming import RowTextStreamer
from tests.tiny_deepseek import tiny_tokenizer

CPU = torch.device("cpu")


def request(length: int, patches: int, **extra) -> PreparedRequest:
    inputs = {
        "input_ids": torch.arange(10, 10 + length).unsqueeze(0),
        "attention_mask": torch.ones(1, length, dtype=torch.long),
        "mm_token_type_ids": torch.ones(1, length, dtype=torch.long),  # a per-token tensor of another model
        "pixel_values": torch.full((patches, 6), float(length), dtype=torch.float64),  # flat patches
        "image_grid_thw": torch.tensor([[1, patches, 1]]),
        **extra,
    }
    return PreparedRequest(Prompt("document", "x"), inputs, max_tokens=4, window=90, width=1, height=1)


def test_collate_left_pads_every_per_token_tensor_and_joins_the_rest() -> None:
    rows = [request(3, 2, num_local_patches=[0]), request(5, 1, pixel_values_local=None, num_local_patches=[2])]
    inputs = collate(rows, pad_id=7, device=CPU, dtype=torch.float32)
    assert inputs["input_ids"].tolist() == [[7, 7, 10, 11, 12], [10, 11, 12, 13, 14]]
    assert inputs["attention_mask"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]
    assert inputs["mm_token_type_ids"].tolist() == [[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]]  # padded with 0, not pad_id
    assert inputs["pixel_values"].shape == (3, 6) and inputs["pixel_values"].dtype == torch.float32
    assert inputs["pixel_values"][:, 0].tolist() == [3.0, 3.0, 5.0]
    assert inputs["image_grid_thw"].tolist() == [[1, 2, 1], [1, 1, 1]] and inputs["image_grid_thw"].dtype == torch.long
    assert "pixel_values_local" not in inputs  # None in every request
    assert inputs["num_local_patches"] == [0, 2]


def test_a_row_ends_at_the_first_of_several_stop_ids() -> None:
    stops = {1, 9}
    assert finish([5, 6, 9, 1, 4], stops, -1, False, 1024, 512) == ([5, 6], "stop", 3)
    assert finish([5, 1, 9], stops, -1, False, 1024, 512) == ([5], "stop", 2)
    assert finish([5, 6, 7, 2, 2], stops, 3, False, 1024, 512) == (
        [5, 6, 7],
        "length",
        3,
    )  # its own limit: padding after
    assert finish([3, 4, 3, 4, 3, 4], stops, -1, True, 2, 2) == ([3, 4], "repetition", 6)


def test_the_streamer_ends_a_row_at_any_stop_id() -> None:
    tok = tiny_tokenizer()
    ids = tok.convert_tokens_to_ids
    stop_a, stop_b = tok.eos_token_id, ids("<td>")
    sent: dict[int, str] = {}
    streamer = RowTextStreamer(tok, 2, lambda row, text: sent.__setitem__(row, sent.get(row, "") + text),
                               {stop_a, stop_b}, {tok.pad_token_id})  # fmt: skip
    streamer.put(torch.tensor([[0], [0]]))  # the prompt
    for a, b in [("Invoice", "Berlin"), ("<td>", "total"), ("total", "<｜end▁of▁sentence｜>"), ("x", "y")]:
        streamer.put(torch.tensor([ids(a), ids(b)]))
    assert sent[0].split() == ["Invoice"] and sent[1].split() == ["Berlin", "total"]


def test_generation_defaults_take_the_servers_options() -> None:
    defaults = GenerationDefaults(max_new_tokens=100, ngram_whitelist="<td>, </td>")
    assert defaults.whitelist_tokens == ["<td>", "</td>"]
    changed = defaults.with_options({"max_new_tokens": "7", "ngram_size": "0", "ngram_whitelist": "", "other": 1})
    assert (changed.max_new_tokens, changed.ngram_size, changed.whitelist_tokens) == (7, 0, [])
    assert changed.window("pdf") == 50 and changed.window("image") == 90
    with pytest.raises(BadInput, match="max_batch"):
        defaults.with_options({"max_batch": "0"})
    with pytest.raises(BadInput, match="repeat_run"):
        defaults.with_options({"repeat_run": "many"})


def test_boxes_scale_from_either_normalised_space() -> None:
    assert parse_boxes("[[100, 200, 500, 600]]", 999, 500) == [[100, 100, 500, 300]]  # 0-999 (DeepSeek)
    assert parse_boxes("[[100, 200, 500, 600]]", 1000, 500, coord_max=1000) == [[100, 100, 500, 300]]  # 0-1000
    assert parse_boxes("[500, 600, 100, 200]", 1000, 1000, coord_max=1000) == [[100, 200, 500, 600]]  # ordered
    assert scale_box([-5, 0, 2000, 1000], 200, 100, 1000) == [0, 0, 200, 100]  # clamped to the image
    assert parse_boxes("[[1, 2, 3]], [[4, 5, 6, 7]]", 1000, 1000, coord_max=1000) == [[4, 5, 6, 7]]
