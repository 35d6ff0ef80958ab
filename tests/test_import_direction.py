"""The layout stays true: no import cycle among project modules, and every import points the declared way.

Every ``import`` in the project's packages counts, also those inside functions and under
``TYPE_CHECKING`` (a cycle hidden in a function is still a cycle). The declared directions are
those of ``supervisor/__init__.py`` and ARCHITECTURE's "Layout":

- ``ipc`` imports neither ``engine`` nor ``supervisor``; ``engine`` never imports ``supervisor``,
  and ``supervisor`` never imports ``engine`` (it starts engines by module name);
- inside ``supervisor``: ``core`` < ``http`` < ``documents`` < ``api`` < ``app`` < ``cli``, each
  importing only those before it (and itself);
- the API dialects never import each other, and what they share (``api.shared``, ``api.forms``)
  imports no dialect.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("supervisor", "engine", "ipc", "dsocr_ocrmypdf")
LAYERS = ("supervisor.core", "supervisor.http", "supervisor.documents", "supervisor.api", "supervisor.app",
          "supervisor.cli")  # fmt: skip
SHARED_API = ("supervisor.api.shared", "supervisor.api.forms")
MAX_LINES = 500


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules ``name`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    modules = project_modules()
    known = set(modules)
    edges = {name: imports_of(name, path, known) for name, path in modules.items()}
    # a package's __init__ importing its own submodules is how packages work, not a cycle
    return {m: {t for t in ts if not t.startswith(m + ".")} for m, ts in edges.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def layer(name: str) -> int | None:
    for rank, prefix in enumerate(LAYERS):
        if name == prefix or name.startswith(prefix + "."):
            return rank
    return None


def dialect(name: str) -> str | None:
    """The dialect a module of ``supervisor.api`` belongs to (``native_stream`` is native's)."""
    if not name.startswith("supervisor.api.") or name in SHARED_API:
        return None
    leaf = name.split(".")[2]
    return "native" if leaf == "native_stream" else leaf


def direction_errors(edges: dict[str, set[str]]) -> list[str]:
    errors = []
    for source, targets in sorted(edges.items()):
        top = source.split(".")[0]
        for target in sorted(targets):
            other = target.split(".")[0]
            if top == "ipc" and other in ("engine", "supervisor"):
                errors.append(f"{source} -> {target}: ipc is below both processes")
            if {top, other} == {"engine", "supervisor"}:
                errors.append(f"{source} -> {target}: the supervisor and the engine meet only in ipc")
            a, b = layer(source), layer(target)
            if a is not None and b is not None and b > a:
                errors.append(f"{source} -> {target}: {LAYERS[a]} may not import {LAYERS[b]}")
            if source in SHARED_API and dialect(target):
                errors.append(f"{source} -> {target}: what dialects share imports no dialect")
            d1, d2 = dialect(source), dialect(target)
            if d1 and d2 and d1 != d2:
                errors.append(f"{source} -> {target}: dialects never import each other")
    return errors


def test_no_import_cycle_among_project_modules() -> None:
    found = cycles(graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_imports_point_the_declared_way() -> None:
    errors = direction_errors(graph())
    assert not errors, "\n".join(errors)


def test_the_checks_catch_what_they_are_for() -> None:
    # the same functions on made-up graphs: a cycle, a core module importing a dialect, two dialects
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    bad = {
        "supervisor.core.lifecycle": {"supervisor.api.native"},
        "supervisor.api.mistral": {"supervisor.api.openai.routes", "supervisor.api.shared"},
        "supervisor.api.native_stream": {"supervisor.api.native"},
        "engine.main": {"supervisor.core.settings"},
    }
    errors = direction_errors(bad)
    assert len(errors) == 3, errors  # native_stream -> native is one dialect's own business
    assert any("dialects never import each other" in e for e in errors)


def test_supervisor_top_level_holds_packages_and_entry_modules() -> None:
    top = sorted(p.name for p in (ROOT / "supervisor").glob("*.py"))
    assert top == ["__init__.py", "app.py"], top


def test_no_supervisor_module_over_the_cap() -> None:
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / "supervisor").rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}  # fmt: skip
    assert not long, long


def test_graph_sees_function_local_imports() -> None:
    edges = graph()
    # supervisor.api.mcp imports the service inside a function: the edge is there all the same
    assert "supervisor.core.service" in edges["supervisor.api.mcp"]
    assert defaultdict(set, edges)["supervisor.app"] >= {"supervisor.api.native", "supervisor.core.service"}
