"""What every model offers, as plain data: the supervisor (and the page) know a model's tasks
without loading it or importing the engine. The engine's adapters check themselves against this
table (tests/engine/test_catalog.py), so it cannot drift from what they really accept.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelInfo:
    name: str
    prompt_types: tuple[str, ...]
    # which request fields a prompt type uses beyond the image
    find_term: tuple[str, ...] = ()  # prompt types that need `find_term`
    custom_prompt: tuple[str, ...] = ()  # prompt types that need `custom_prompt`
    grounding: bool = False  # takes the `grounding` switch
    streams: bool = False  # sends partial text while it generates
    description: str = ""
    # ``--model-option`` keys whose values are one of a few: checked before the server starts
    option_choices: tuple[tuple[str, tuple[str, ...]], ...] = ()


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "ppocr",
            ("ocr", "free", "document"),
            description=(
                "PP-OCRv6-small detection + recognition with a PP-PicoDet layout net (embedded, CPU-friendly): "
                "ocr = the lines, one per row; free = paragraphs; document = markdown from layout regions "
                "(headings, tables, figure crops, no page headers/footers); layout=true adds regions to ocr/free"
            ),
            option_choices=(("backend", ("auto", "onnxruntime", "torch")),),
        ),
        ModelInfo(
            "deepseek-ocr-2",
            ("document", "ocr", "free", "figure", "describe", "find", "freeform"),
            find_term=("find",),
            custom_prompt=("freeform",),
            grounding=True,
            streams=True,
            description="DeepSeek-OCR-2 (transformers' native classes; ~6.7 GB in bf16)",
        ),
        ModelInfo(
            "synthetic",
            ("ocr", "free", "document"),
            description="random weights of a chosen size, for benchmarks of the lifecycle",
        ),
    )
}

MODEL_NAMES = tuple(MODELS)


def model_info(name: str) -> ModelInfo | None:
    return MODELS.get(name)


def option_error(model: str, options: dict) -> str | None:
    """Why ``options`` cannot work for ``model`` (a value outside its choices), or None."""
    info = MODELS.get(model)
    for key, choices in info.option_choices if info else ():
        if key in options and str(options[key]) not in choices:
            return f"{model}.{key}={options[key]!r}: one of {', '.join(choices)}"
    return None
