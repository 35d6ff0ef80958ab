"""The catalog (ipc/catalog.py) is the one table of prompt types: every adapter answers exactly its own."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from bench import tiny_models
from engine.models import ADAPTERS
from engine.models.base import Unsupported
from engine.models.vlm import VlmAdapter
from ipc.catalog import MODELS, default_prompt_type

pytestmark = pytest.mark.timeout(300)
# every prompt type any model has, and one none has
ALL_TYPES = sorted({t for info in MODELS.values() for t in info.prompt_types} | {"poem"})


def adapter_class(name: str) -> type:
    module, cls = ADAPTERS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def test_every_catalog_model_has_an_adapter_and_its_prompt_types() -> None:
    assert set(ADAPTERS) == set(MODELS)
    for name, info in MODELS.items():
        cls = adapter_class(name)
        assert cls.name == name
        assert tuple(cls.prompt_types) == info.prompt_types, name  # read from the catalog, not written twice
        assert info.default_prompt_type in info.prompt_types, name
        assert set(info.find_term) | set(info.custom_prompt) <= set(info.prompt_types), name


def test_vlms_default_to_their_document_task_and_ppocr_to_ocr() -> None:
    vlms = [name for name in MODELS if issubclass(adapter_class(name), VlmAdapter)]
    assert "deepseek-ocr-2" in vlms
    assert all(default_prompt_type(name) == "document" for name in vlms)
    assert default_prompt_type("ppocr") == "ocr"


def options_for(name: str, prompt_type: str) -> dict[str, str]:
    info = MODELS[name]
    options = {"prompt_type": prompt_type}
    if prompt_type in info.find_term:
        options["find_term"] = "total"
    if prompt_type in info.custom_prompt:
        options["custom_prompt"] = "Read the total."
    return options


@pytest.mark.parametrize("name", sorted(tiny_models.builders()))
def test_a_vlm_builds_a_prompt_for_each_catalog_type_and_refuses_the_others(
    name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The adapter's own ``build_prompt`` (below the catalog gate): a type the catalog lacks must be
    Unsupported there too, so an adapter cannot answer what the catalog does not list."""
    folder = tiny_models.build(name, tmp_path_factory.mktemp(f"tiny-{name}"))
    adapter = adapter_class(name)({"model_path": str(folder)})
    adapter.processor = adapter.load_processor(adapter.folder())
    info = MODELS[name]
    for prompt_type in ALL_TYPES:
        if prompt_type in info.prompt_types:
            prompt = adapter.build_prompt(prompt_type, options_for(name, prompt_type))
            assert prompt.prompt_type == prompt_type and prompt.text, (name, prompt_type)
        else:
            with pytest.raises(Unsupported):
                adapter.build_prompt(prompt_type, {"prompt_type": prompt_type})
    with pytest.raises(Unsupported, match=f"known: {', '.join(info.prompt_types)}"):
        adapter.prompt_type_of({"prompt_type": "poem"})
    assert adapter.prompt_type_of({}) == info.default_prompt_type


def test_deepseek_prompt_table_is_the_catalogs() -> None:
    from engine.models.deepseek_ocr2.prompts import PROMPTS

    assert tuple(PROMPTS) == MODELS["deepseek-ocr-2"].prompt_types


def test_tiny_builders_are_catalog_models_and_build_from_the_command_line(tmp_path: Path) -> None:
    assert set(tiny_models.builders()) <= set(MODELS)
    with pytest.raises(KeyError, match="no tiny builder"):
        tiny_models.build("poem-ocr-tiny", tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "bench.tiny_models", "deepseek-ocr-2", str(tmp_path / "ds")],
        capture_output=True, text=True, timeout=240, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()) == tmp_path / "ds" and (tmp_path / "ds" / "config.json").is_file()
