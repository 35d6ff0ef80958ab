"""constraints.txt, the lock every install uses: well formed, within pyproject.toml's ranges, in step
with the exact pins elsewhere (TORCH_SPEC, rapidocr, the test extras), used by `make install` and the
Dockerfile, and what this environment really runs."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CONSTRAINTS = ROOT / "constraints.txt"
MAKEFILE = (ROOT / "Makefile").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PYPROJECT = (ROOT / "pyproject.toml").read_text()
LOCK_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def locked() -> dict[str, str]:
    pins = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = LOCK_LINE.match(line)
        assert match, f"constraints.txt: not a `name==version` line: {line!r} (regenerate: make lock)"
        pins[canonicalize_name(match.group(1))] = match.group(2)
    return pins


def requirements() -> list[Requirement]:
    """Every requirement string in pyproject.toml's dependencies and optional dependencies."""
    block = PYPROJECT.split("[project.scripts]", 1)[0]
    return [Requirement(text) for text in re.findall(r'^\s*"([A-Za-z][^"]*)",', block, re.MULTILINE)]


def torch_spec(text: str) -> str:
    found = re.search(r"TORCH_SPEC\s*\??=\s*torch==(\S+)", text)
    assert found, "no TORCH_SPEC=torch==X"
    return found.group(1)


def test_the_lock_is_well_formed_and_leaves_torch_and_the_project_out() -> None:
    pins = locked()
    assert len(pins) > 50
    assert "torch" not in pins, "torch is pinned by TORCH_SPEC (the CPU or the CUDA build), not in constraints.txt"
    assert "dsocr" not in pins
    assert "make lock" in CONSTRAINTS.read_text().splitlines()[0], "the first line says how to regenerate it"


def test_the_lock_is_within_every_range_and_agrees_with_every_exact_pin() -> None:
    pins = locked()
    for requirement in requirements():
        name = canonicalize_name(requirement.name)
        if name == "torch" or name not in pins:
            continue
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"constraints.txt has {name}=={pins[name]}, outside pyproject.toml's {requirement}"
        )
    assert pins["rapidocr"] == re.search(r"rapidocr==(\S+)", MAKEFILE).group(1)  # type: ignore[union-attr]
    assert torch_spec(MAKEFILE) == torch_spec(DOCKERFILE), "the Makefile and the Dockerfile pin one torch"


def test_make_install_and_the_dockerfile_install_with_the_lock() -> None:
    assert re.search(r"^\$\(STAMP\):.*\$\(CONSTRAINTS\)", MAKEFILE, re.MULTILINE), "the stamp depends on the lock"
    assert "CONSTRAINTS := constraints.txt" in MAKEFILE
    installs = [line for line in MAKEFILE.splitlines() if "pip install" in line]
    assert installs and all("-c $(CONSTRAINTS)" in line for line in installs), installs
    # all but torch's (TORCH_SPEC) and the project's own (--no-deps .)
    runs = [line for line in DOCKERFILE.splitlines()
            if "pip install" in line and "TORCH_SPEC" not in line and "--no-deps ." not in line]  # fmt: skip
    assert runs and all("-c constraints.txt" in line for line in runs), runs
    assert re.search(r"^COPY .*constraints\.txt", DOCKERFILE, re.MULTILINE)


def test_this_environment_runs_the_locked_versions() -> None:
    wrong = []
    for name, pinned in locked().items():
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue  # not needed here (an extra of another Python, say)
        if installed != pinned:
            wrong.append(f"{name} {installed} (locked {pinned})")
    torch = version("torch").split("+")[0]  # 2.13.0+cpu is TORCH_SPEC's CPU build
    if torch != torch_spec(MAKEFILE):
        wrong.append(f"torch {torch} (TORCH_SPEC {torch_spec(MAKEFILE)})")
    assert not wrong, f"not the locked versions: {wrong}; `make install` installs them, `make lock` records new ones"
