"""Loading the graph a command names: ``module:attr`` or ``path/to/file.py:attr``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from flowstate.engine import CompiledGraph, GraphBuilder
from flowstate.errors import CLIError, FlowstateError, GraphLoadError

from ._console import debug_requested, err_console

__all__ = ["load_graph"]


def _import_module(target: str, mod_name: str) -> Any:
    if mod_name.endswith(".py") or "/" in mod_name or os.sep in mod_name:
        path = Path(mod_name if mod_name.endswith(".py") else mod_name + ".py")
        if not path.is_file():
            raise GraphLoadError(f"no file '{path}' (from '{target}'): check the path")
        sys.path.insert(0, str(path.parent.resolve()))
        mod_name = path.stem
    elif os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if mod_name not in sys.modules:
        _warn_if_runs_at_import(mod_name)
    try:
        return importlib.import_module(mod_name)
    except ImportError as e:
        raise GraphLoadError(f"cannot import module '{mod_name}': {e}") from None
    except FlowstateError:
        raise
    except Exception as e:
        if debug_requested():
            raise
        where = ""
        tb = traceback.extract_tb(e.__traceback__)
        if tb:
            where = f" ({Path(tb[-1].filename).name}, line {tb[-1].lineno})"
        raise GraphLoadError(
            f"importing module '{mod_name}' raised {type(e).__name__}: {e}{where}; "
            "fix the module (--debug shows the traceback)"
        ) from None


_RUN_METHODS = {"run", "run_sync", "resume", "resume_sync", "fork", "replay", "stream"}
"""Calls that start a run (``app.run_sync(...)``, and ``asyncio.run(app.run(...))``)."""
_NOT_RUNS = {"subprocess", "uvicorn"}
"""Modules whose ``run`` is not a graph's."""


def _warn_if_runs_at_import(mod_name: str) -> None:
    """Warn when a graph module starts a run at import time, outside
    ``if __name__ == "__main__":`` and outside functions: every command that loads it
    would run it again."""
    try:
        spec = importlib.util.find_spec(mod_name)
    except (ImportError, ValueError):
        return
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return
    try:
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test):
            continue
        for node in ast.walk(stmt):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _RUN_METHODS
                and not (isinstance(node.func.value, ast.Name) and node.func.value.id in _NOT_RUNS)
            ):
                err_console.print(
                    f"warning: {spec.origin} starts a run when it is imported (line "
                    f"{node.lineno}: {ast.unparse(node)[:60]}); every flowstate command that "
                    'loads it runs it again. Put it under `if __name__ == "__main__":`.',
                    highlight=False,
                    markup=False,
                )
                return


def _is_factory(obj: Any) -> tuple[bool, str]:
    """Whether ``obj`` can be called to build a graph: a function whose parameters all have
    defaults, except ``llm``. Returns (ok, why not)."""
    try:
        params = inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False, "its signature cannot be read"
    required = [
        p.name
        for p in params.values()
        if p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and p.name != "llm"
    ]
    if required:
        return False, f"it takes ({', '.join(required)}), so it looks like a node or a router"
    return True, ""


def load_graph(target: str, llm: str | None = None) -> CompiledGraph[Any]:
    """Import ``module:attr`` or ``path/to/file.py:attr`` given on the command line: a
    CompiledGraph, a GraphBuilder (compiled with its default store), or a function
    returning one (given ``llm`` when it takes one). Not yet bound to the command's
    database: see ``resolve_db``."""
    if ":" not in target and Path(target).suffix in (".toml", ".json") and Path(target).is_file():
        return _load_crew_spec(target, llm)
    if ":" not in target or target.endswith(":"):
        raise GraphLoadError(
            f"'{target}' is not module:attr; e.g. myapp.graphs:app or path/to/file.py:app"
        )
    mod_name, attr = target.rsplit(":", 1)
    module = _import_module(target, mod_name)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(
                n
                for n, v in vars(module).items()
                if isinstance(v, CompiledGraph | GraphBuilder) and not n.startswith("_")
            )
            hint = f"; its graphs: {', '.join(names)}" if names else ""
            raise GraphLoadError(f"module '{mod_name}' has no attribute '{attr}'{hint}")
        obj = getattr(obj, part)
    expected = (
        "point at a compiled graph (the result of GraphBuilder.compile()), a GraphBuilder, or "
        "a function returning one"
    )
    if isinstance(obj, type):
        raise GraphLoadError(f"'{target}' is a class ({obj.__name__}), not a graph: {expected}")
    if callable(obj) and not isinstance(obj, CompiledGraph | GraphBuilder):
        ok, why = _is_factory(obj)
        if not ok and (_takes_model_first(obj) or _is_prebuilt(obj)):
            # a prebuilt graph whose first parameter takes the model(s), as debate_crew's
            # debaters: given the model, or one error line naming what else it needs
            return _compiled(_build_with_model(obj, target, llm), target, expected)
        if not ok:
            raise GraphLoadError(f"'{target}' is a function but not a graph: {why}; {expected}")
        kwargs: dict[str, Any] = {}
        if "llm" in inspect.signature(obj).parameters:
            spec = llm or os.environ.get("FLOWSTATE_LLM")
            if not spec:
                raise CLIError(
                    f"'{target}' needs a model: pass --llm anthropic:MODEL or "
                    "--llm scripted:FILE.json (or set FLOWSTATE_LLM)"
                )
            from flowstate.llm import llm_from_spec

            kwargs["llm"] = llm_from_spec(spec)
        try:
            obj = obj(**kwargs)
        except FlowstateError:
            raise
        except Exception as e:
            if debug_requested():
                raise
            raise GraphLoadError(
                f"calling '{target}' to build the graph raised {type(e).__name__}: {e}"
            ) from None
    elif llm:
        raise CLIError(
            f"'{target}' takes no model, so --llm {llm} would not be used: --llm is for "
            "functions that build a graph from a model (an llm parameter), like "
            "flowstate.graphs:react_agent"
        )
    return _compiled(obj, target, expected)


def _compiled(obj: Any, target: str, expected: str) -> CompiledGraph[Any]:
    if isinstance(obj, GraphBuilder):
        obj = obj.compile()
    if not isinstance(obj, CompiledGraph):
        raise GraphLoadError(f"'{target}' is a {type(obj).__name__}, not a graph: {expected}")
    return obj


def _takes_model_first(fn: Any) -> bool:
    """Whether ``fn``'s first parameter is annotated to take an ``LLM`` (or several)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    return bool(params) and "LLM" in str(params[0].annotation)


def _is_prebuilt(fn: Any) -> bool:
    """A builder of flowstate's prebuilt graphs (crews take agents the CLI cannot give:
    ``build_with_llm`` says so in one line, pointing at crew spec files)."""
    return str(getattr(fn, "__module__", "")).startswith("flowstate.graphs")


def _model_spec(llm: str | None) -> str | None:
    return llm or os.environ.get("FLOWSTATE_LLM")


def _build_with_model(fn: Any, target: str, llm: str | None) -> Any:
    from flowstate.graphs import build_with_llm
    from flowstate.llm import llm_from_spec

    spec = _model_spec(llm)
    try:
        return build_with_llm(fn, (lambda: llm_from_spec(spec)) if spec else None, target)
    except FlowstateError:
        raise
    except Exception as e:
        if debug_requested():
            raise
        raise GraphLoadError(
            f"calling '{target}' to build the graph raised {type(e).__name__}: {e}"
        ) from None


def _load_crew_spec(target: str, llm: str | None) -> CompiledGraph[Any]:
    """A crew spec file (TOML or JSON: agents, roles, tools by import path), built with the
    model given by ``--llm``."""
    from flowstate.graphs import CrewSpecError, crew_from_spec
    from flowstate.llm import llm_from_spec

    spec = _model_spec(llm)
    if not spec:
        raise CrewSpecError(
            f"the crew spec {target!r} needs a model: pass --llm anthropic:MODEL or "
            "--llm scripted:FILE"
        )
    return crew_from_spec(target, llm_from_spec(spec)).compile()
