"""Crews from a small spec file, and prebuilt graph builders called with only a model.

The command line can give a prebuilt graph one thing: a model (`--llm`). `build_with_llm`
calls a builder such as `debate_crew` or `react_agent` with it, and names what else the
builder needs when it needs more. A crew whose agents must be described goes through a spec
file instead (`flowstate run crew.toml --llm anthropic:claude-sonnet-4-5`):

    crew = "pipeline"                  # debate | orchestrator | pipeline | coordinator

    [[agents]]
    name = "researcher"
    role = "Find the facts the request needs; list them with sources."
    description = "finds facts"        # what orchestrators and coordinators choose by
    tools = ["mytools:search"]         # optional: @tool functions by import path (ReAct agent)

    [[agents]]
    name = "writer"
    role = "Write the answer from the researcher's facts, in plain words."

Other top-level keys are passed to the builder (`rounds = 1` for a debate,
`max_delegations = 4` for a coordinator, `name = "my_crew"`). JSON works too, with the same
keys. Tools are the only thing imported from a spec, and only from the paths it names.
"""

from __future__ import annotations

import importlib
import inspect
import json
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from flowstate.engine import GraphBuilder
from flowstate.errors import FlowstateError
from flowstate.llm import LLM

from ._crew_agents import Agent, agent_from_graph, agent_from_llm
from ._crew_coordinator import coordinator_crew
from ._crew_debate import debate_crew
from ._crew_orchestrator import orchestrator_crew
from ._crew_pipeline import pipeline_crew
from ._react import react_agent

__all__ = ["CREW_KINDS", "CrewSpecError", "build_with_llm", "crew_from_spec"]

CREW_KINDS: Mapping[str, Callable[..., GraphBuilder[Any]]] = {
    "debate": debate_crew,
    "orchestrator": orchestrator_crew,
    "pipeline": pipeline_crew,
    "coordinator": coordinator_crew,
}
"""The crews a spec file can name with `crew = "..."`."""

_AGENT_KEYS = {"name", "role", "system", "description", "tools", "max_tokens"}
_SPEC_HELP = (
    'write a crew spec file (TOML or JSON): crew = "pipeline", then one [[agents]] table per '
    "agent with name, role and optional description and tools (import paths)"
)


class CrewSpecError(FlowstateError):
    """A crew spec file is invalid, or a prebuilt graph needs more than a model to be built."""

    code = "FS150"


def build_with_llm(
    builder: Callable[..., Any], llm: LLM | Callable[[], LLM] | None, target: str
) -> Any:
    """Call a prebuilt graph's builder with only a model, or say in one line what is missing.

    The model goes to a parameter named `llm`, or to the first parameter when its annotation
    accepts an `LLM` (as `debate_crew(debaters)` does). Any other parameter without a default
    cannot come from the command line: `CrewSpecError` names it and the way out. `llm` may
    be a function making the model, called only when the builder takes one.
    """
    try:
        params = list(inspect.signature(builder).parameters.values())
    except (TypeError, ValueError):
        return builder()
    kwargs: dict[str, Any] = {}
    for index, p in enumerate(params):
        takes_llm = p.name == "llm" or (index == 0 and "LLM" in str(p.annotation))
        if takes_llm:
            if llm is None:
                raise CrewSpecError(
                    f"{target!r} needs a model: pass --llm anthropic:MODEL or --llm scripted:FILE"
                )
            kwargs[p.name] = llm if isinstance(llm, LLM) else llm()
    missing = [
        p.name
        for p in params
        if p.name not in kwargs
        and p.default is inspect.Parameter.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise CrewSpecError(
            f"{target!r} needs {names}, which the command line cannot give: run a crew spec "
            "file instead (flowstate run crew.toml --llm ...; see docs/guides/llm.md), or a "
            "ready-made crew such as flowstate.graphs.examples:research_crew"
        )
    return builder(**kwargs)


def crew_from_spec(spec: str | Path | Mapping[str, Any], llm: LLM) -> GraphBuilder[Any]:
    """A crew built from a spec (a TOML or JSON file, or its parsed mapping) and a model."""
    where = str(spec) if isinstance(spec, str | Path) else "the crew spec"
    data = _read(spec) if isinstance(spec, str | Path) else dict(spec)
    kind = data.pop("crew", None)
    if kind not in CREW_KINDS:
        raise CrewSpecError(
            f"{where}: crew = {kind!r} is not a crew; use one of {', '.join(CREW_KINDS)}"
        )
    raw_agents = data.pop("agents", None)
    if not isinstance(raw_agents, list) or not raw_agents:
        raise CrewSpecError(f"{where}: no agents; {_SPEC_HELP}")
    agents = [_agent(a, i, llm, where) for i, a in enumerate(raw_agents)]
    builder = CREW_KINDS[kind]
    accepted = set(inspect.signature(builder).parameters)
    unknown = sorted(set(data) - accepted)
    if unknown:
        raise CrewSpecError(
            f"{where}: {kind} crews take no option {', '.join(repr(u) for u in unknown)}; "
            f"options: {', '.join(sorted(accepted - {'llm', 'agents', 'debaters', 'specialists'}))}"
        )
    if kind == "debate":
        return builder(agents, **data)
    if kind == "pipeline":
        return builder(agents, **data)
    return builder(llm, agents, **data)


def _read(path: str | Path) -> dict[str, Any]:
    file = Path(path)
    try:
        raw = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise CrewSpecError(f"cannot read the crew spec {str(file)!r}: {exc.strerror}") from None
    try:
        data = json.loads(raw) if file.suffix == ".json" else tomllib.loads(raw)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise CrewSpecError(f"the crew spec {str(file)!r} is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise CrewSpecError(f"the crew spec {str(file)!r} must be a table/object; {_SPEC_HELP}")
    return data


def _agent(raw: Any, index: int, llm: LLM, where: str) -> Agent:
    if not isinstance(raw, dict) or "name" not in raw:
        raise CrewSpecError(f"{where}: agents[{index}] needs a name; {_SPEC_HELP}")
    extra = sorted(set(raw) - _AGENT_KEYS)
    if extra:
        raise CrewSpecError(
            f"{where}: agent {raw['name']!r} has unknown keys {extra}; keys: "
            f"{', '.join(sorted(_AGENT_KEYS))}"
        )
    system = str(raw.get("role") or raw.get("system") or "")
    if not system:
        raise CrewSpecError(f"{where}: agent {raw['name']!r} needs a role (its instructions)")
    description = str(raw.get("description", ""))
    tools = [_import_tool(t, raw["name"], where) for t in raw.get("tools", [])]
    max_tokens = int(raw.get("max_tokens", 1024))
    if tools:
        graph = react_agent(llm, tools, system=system, max_tokens=max_tokens, name=raw["name"])
        return agent_from_graph(raw["name"], graph, description)
    return agent_from_llm(raw["name"], llm, system, description, max_tokens=max_tokens)


def _import_tool(path: Any, agent: str, where: str) -> Any:
    if not isinstance(path, str) or ":" not in path:
        raise CrewSpecError(
            f"{where}: agent {agent!r} names tool {path!r}; give tools as 'module:function'"
        )
    module_name, _, attr = path.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise CrewSpecError(
            f"{where}: agent {agent!r}: cannot import tool {path!r} ({exc})"
        ) from None
    if not callable(found):
        raise CrewSpecError(f"{where}: agent {agent!r}: tool {path!r} is not a function")
    return found
