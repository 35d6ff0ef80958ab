"""What every model offers, as plain data: the supervisor (and the page) know a model's tasks
without loading it or importing the engine. The engine's adapters check themselves against this
table (tests/engine/test_catalog.py): an adapter's ``prompt_types`` is read from here
(``ModelAdapter.__init_subclass__``), so it cannot drift from what it really accepts.
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
    # what a request without a ``prompt_type`` gets: VLMs their document (markdown) task
    default_prompt_type: str = "ocr"
    # ``--model-option`` keys whose values are one of a few: checked before the server starts
    option_choices: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # (prompt type, what it gives with this model), for a line under the page's task list
    prompt_type_notes: tuple[tuple[str, str], ...] = ()


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
            prompt_type_notes=(
                ("ocr", "ppocr: the text line by line, in reading order, with a box for each line."),
                ("free", "ppocr: the text as paragraphs (lines of a block joined, hyphenation undone)."),
                (
                    "document",
                    "ppocr: Markdown from the page's layout: headings, columns in order, tables, "
                    "figure crops; page headers and footers left out.",
                ),
            ),
        ),
        ModelInfo(
            "deepseek-ocr-2",
            ("document", "ocr", "free", "figure", "describe", "find", "freeform"),
            find_term=("find",),
            custom_prompt=("freeform",),
            grounding=True,
            streams=True,
            description="DeepSeek-OCR-2 (transformers' native classes; ~6.7 GB in bf16)",
            default_prompt_type="document",
        ),
        ModelInfo(
            "glm-ocr",
            ("document", "ocr", "free", "table", "formula", "freeform"),
            custom_prompt=("freeform",),
            streams=True,
            description="GLM-OCR 0.9B (zai-org/GLM-OCR; OmniDocBench v1.5 94.62)",
            default_prompt_type="document",
        ),
        ModelInfo(
            "paddleocr-vl",
            ("document", "ocr", "free", "table", "formula", "chart", "seal"),
            streams=True,
            description="PaddleOCR-VL-1.5 0.9B (PaddlePaddle/PaddleOCR-VL-1.5; OmniDocBench v1.5 94.50)",
            default_prompt_type="document",
        ),
        ModelInfo(
            "hunyuan-ocr",
            ("document", "ocr", "free", "table", "formula", "chart", "freeform"),
            custom_prompt=("freeform",),
            streams=True,
            description="HunyuanOCR 1B (tencent/HunyuanOCR; OmniDocBench v1.5 94.10)",
            default_prompt_type="document",
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


def default_prompt_type(name: str) -> str:
    """What ``name`` answers a request without a ``prompt_type`` with (``ocr`` for an unknown model)."""
    info = MODELS.get(name)
    return info.default_prompt_type if info else "ocr"


def option_error(model: str, options: dict) -> str | None:
    """Why ``options`` cannot work for ``model`` (a value outside its choices), or None."""
    info = MODELS.get(model)
    for key, choices in info.option_choices if info else ():
        if key in options and str(options[key]) not in choices:
            return f"{model}.{key}={options[key]!r}: one of {', '.join(choices)}"
    return None
