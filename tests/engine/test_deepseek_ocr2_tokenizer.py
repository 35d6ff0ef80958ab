"""DeepSeek-OCR-2's prompt ids on a tokenizer with the released special-token table.

The real ``tokenizer.json`` (a ``LlamaTokenizerFast``, 128k byte-level BPE tokens) is not here; its
ids are: BOS 0, EOS 1, PAD 2 and the added tokens from 128815 on in this order, as pinned by a
reimplementation checked against the released ``tokenizer.json`` and consistent with upstream's
own code (``ngram_norepeat`` whitelists 128821 and 128822 as ``<td>``, ``</td>``;
``modeling_deepseekocr`` hard-codes ``<image>`` = 128815). The vocabulary in between is filler:
what matters here is the table, the BOS post-processor (``add_bos_token``) and the processor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import DeepseekOcr2ImageProcessorPil, DeepseekOcr2Processor, PreTrainedTokenizerFast

from bench.tiny_models.deepseek_ocr2 import BOS, EOS, PAD
from engine.models.deepseek_ocr2 import DeepseekOcr2Adapter

pytestmark = pytest.mark.timeout(120)
FIRST_ADDED = 128815
ADDED = ["<image>", "<|ref|>", "<|/ref|>", "<|det|>", "<|/det|>", "<|grounding|>",
         "<td>", "</td>", "<tr>", "</tr>", "<|User|>", "<|Assistant|>"]  # fmt: skip
WORDS = ["Convert", "the", "document", "to", "markdown.", "OCR", "this", "image.", "\n"]


@pytest.fixture(scope="module")
def processor() -> DeepseekOcr2Processor:
    vocab = {BOS: 0, EOS: 1, PAD: 2, "[UNK]": 3}
    for word in WORDS:
        vocab[word] = len(vocab)
    vocab.update({f"filler{i}": i for i in range(len(vocab), FIRST_ADDED)})
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Split(" ", behavior="removed")
    # the released tokenizer.json's post-processor: BOS before every sequence, no EOS
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, 0)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token="[UNK]",
        extra_special_tokens={"image_token": "<image>"},
    )  # fmt: skip
    fast.add_special_tokens({"additional_special_tokens": ADDED})
    assert [fast.convert_tokens_to_ids(t) for t in ADDED] == list(range(FIRST_ADDED, FIRST_ADDED + len(ADDED)))
    image_processor = DeepseekOcr2ImageProcessorPil(size={"height": 256, "width": 256}, tile_size=192)
    return DeepseekOcr2Processor(image_processor=image_processor, tokenizer=fast, patch_size=4, downsample_ratio=4)


def adapter_with(processor: DeepseekOcr2Processor) -> DeepseekOcr2Adapter:
    adapter = DeepseekOcr2Adapter()
    adapter.processor = processor  # what after_bind loads from the folder
    return adapter


def test_prompt_ids_start_with_bos_then_the_image(processor: DeepseekOcr2Processor) -> None:
    adapter = adapter_with(processor)
    page = np.full((120, 180, 3), 255, dtype=np.uint8)
    request = adapter.prepare(page, {}, max_positions=10**6)  # the default: document
    ids = request.input_ids.tolist()
    assert ids[0] == 0  # BOS first, as upstream's prompts start
    assert ids.count(0) == 1 and ids[1] == FIRST_ADDED  # then the image's tokens (<image> = 128815)
    image_tokens = ids.count(FIRST_ADDED)
    assert ids[1 + image_tokens :] == [
        processor.tokenizer.convert_tokens_to_ids(t)
        for t in ["\n", "<|grounding|>", "Convert", "the", "document", "to", "markdown."]
    ]
    assert ids[1 + image_tokens + 1] == 128820  # <|grounding|>
    assert torch.equal(request.inputs["attention_mask"], torch.ones(1, len(ids), dtype=torch.long))


def test_the_ngram_whitelist_is_the_four_table_tokens(processor: DeepseekOcr2Processor) -> None:
    adapter = adapter_with(processor)
    assert adapter._whitelist_ids() == [128821, 128822, 128823, 128824]  # <td> </td> <tr> </tr>
    assert adapter.stop_token_ids() == [1]
    assert adapter._skip_ids() == {0, 1, 2}  # BOS, EOS and PAD never reach the text
    forbidden = adapter.forbidden_tokens()
    assert {"<image>", "<|grounding|>", "<|ref|>", "<|det|>", BOS, EOS} <= set(forbidden)
