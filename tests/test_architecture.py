"""The layering and the public seams between packages, enforced (DESIGN.md "Layers").

1. Imports only go downward: errors/events -> llm, checkpoints, memory, observability ->
   engine -> nodes
   -> graphs (and ``flowstate.testing``) -> service -> cli -> the ``flowstate`` package
   itself. A package may import its own modules freely.
2. No module imports another package's private module (``flowstate.engine._app``) or a
   private attribute of it (``from flowstate.engine import _events``). The root package's
   own private modules (``flowstate._crashpoints``: test hooks) are shared internals of
   every subpackage.
3. No mixin in the engine: every engine class derives from at most one flowstate class.
4. One concept per module (STYLE.md 2): no module reaches ``MAX_MODULE_LINES`` lines.

Every import counts: module level, inside functions, under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "flowstate"

LEVELS = {
    "errors": 0,
    "events": 0,
    "_crashpoints": 0,
    "clock": 0.5,  # the injectable clock: above errors (it raises TimerError), below stores
    "llm": 1,
    "checkpoints": 1,
    "memory": 1,
    "observability": 1,
    "engine": 2,
    "nodes": 3,
    "graphs": 4,
    "testing": 4,
    "service": 5,
    "cli": 6,
    "": 7,  # flowstate/__init__.py re-exports the public surface
}
"""The layer of each top-level part of ``flowstate``; imports must go to a lower one."""

MAX_MODULE_LINES = 600
"""A module this long mixes jobs: split it by concept, as ``engine/_app.py`` (``_app_core``,
``_app_runs``) and ``service/_service.py`` (``_execution``) were."""


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def _imports(module: str, path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line, imported module, names imported from it) of every flowstate import."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "flowstate":
                    yield node.lineno, a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_pkg:
                    base = base[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "flowstate":  # from flowstate import events: the module itself
                for a in node.names:
                    yield node.lineno, f"flowstate.{a.name}", []
            elif target.split(".")[0] == "flowstate":
                yield node.lineno, target, [a.name for a in node.names]


def _part(module: str) -> str:
    """The top-level part of flowstate a module belongs to ("" for the root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_part_has_a_layer() -> None:
    parts = {_part(m) for m, _ in _modules()}
    assert parts <= set(LEVELS), f"give these a layer in LEVELS: {sorted(parts - set(LEVELS))}"


def test_imports_go_downward_and_never_reach_into_another_package() -> None:
    problems: list[str] = []
    for module, path in _modules():
        own = _part(module)
        for line, target, names in _imports(module, path):
            other = _part(target)
            where = f"{path.relative_to(ROOT.parent)}:{line}"
            if other == own:
                continue
            if LEVELS[other] >= LEVELS[own]:
                problems.append(
                    f"{where}: {own or 'flowstate'} (layer {LEVELS[own]}) imports "
                    f"{target} (layer {LEVELS[other]}): imports only go downward"
                )
            private = [p for p in target.split(".")[2:] if p.startswith("_")]
            if other and private and not other.startswith("_"):
                problems.append(f"{where}: imports the private module {target}")
            if other and not other.startswith("_"):
                bad = [n for n in names if n.startswith("_") and n != "__version__"]
                if bad:
                    problems.append(f"{where}: imports private {bad} from {target}")
    assert not problems, "\n".join(problems)


def test_the_rules_catch_what_they_should(tmp_path: Path) -> None:
    """The checker itself: a private reach-in and an upward import are found."""
    bad = tmp_path / "flowstate" / "engine" / "_bad.py"
    bad.parent.mkdir(parents=True)
    bad.write_text(
        "from flowstate.service._app import create_app\n"
        "from flowstate.checkpoints import _common\n"
        "from .._crashpoints import crash_point\n"
    )
    got = list(_imports("flowstate.engine._bad", bad))
    assert got == [
        (1, "flowstate.service._app", ["create_app"]),
        (2, "flowstate.checkpoints", ["_common"]),
        (3, "flowstate._crashpoints", ["crash_point"]),
    ]
    assert LEVELS[_part(got[0][1])] > LEVELS["engine"]


@pytest.mark.parametrize("module", [m for m, _ in _modules() if m.startswith("flowstate.engine")])
def test_no_mixin_in_the_engine(module: str) -> None:
    path = ROOT.parent / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = ROOT.parent / module.replace(".", "/") / "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ClassDef):
            names = [ast.unparse(b) for b in node.bases]
            assert not any("Mixin" in n for n in names), f"{module}.{node.name}: {names}"
            ours = [
                n
                for n in names
                if not n.startswith(("Generic", "Protocol", "BaseModel", "Exception"))
                and n not in ("BaseException", "FlowstateError", "_Base", "Enum", "str")
            ]
            assert len(ours) <= 1, f"{module}.{node.name} combines {ours}"


def test_modules_stay_under_the_size_limit() -> None:
    sizes = {m: len(p.read_text().splitlines()) for m, p in _modules()}
    big = [f"{m}: {n} lines" for m, n in sorted(sizes.items()) if n >= MAX_MODULE_LINES]
    assert not big, f"split these by concept (STYLE.md 2): {big}"
