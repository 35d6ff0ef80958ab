"""The catalog's notes on prompt types (shown under the page's task list) name prompt types the
model has, and ppocr, whose three prompt types read alike today, says so for each."""

from __future__ import annotations

from ipc.catalog import MODELS


def test_every_note_is_about_a_prompt_type_the_model_has() -> None:
    for info in MODELS.values():
        noted = [prompt_type for prompt_type, _ in info.prompt_type_notes]
        assert set(noted) <= set(info.prompt_types), info.name
        assert len(noted) == len(set(noted)), info.name


def test_ppocr_says_what_each_of_its_prompt_types_gives() -> None:
    notes = dict(MODELS["ppocr"].prompt_type_notes)
    assert set(notes) == set(MODELS["ppocr"].prompt_types)
    assert all(note.strip() for note in notes.values())
