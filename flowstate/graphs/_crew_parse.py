"""Reading what orchestrator and coordinator models answer.

Both parsers are pure functions of the reply text and the known agent names, so a replayed run
parses the journaled reply the same way. Names match case-insensitively, with `-`, `_` and
spaces treated alike (`Data Analyst` finds `data_analyst`).
"""

import re
from dataclasses import dataclass, field
from typing import Literal

from ._crew_models import Delegate

__all__ = ["Choices", "Decision", "name_key", "parse_choices", "parse_decision"]


def name_key(name: str) -> str:
    """The form names are compared in: lower case, `-` and spaces as `_`."""
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


_BULLET = re.compile(r"^\s*(?:[-*•>]+|\d+[.)])\s*")
_DECORATION = "*_`'\"[]<>() \t"
_TOKEN = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


@dataclass
class Choices:
    """The specialists an orchestrator chose, and the names it made up."""

    chosen: list[tuple[str, str]] = field(default_factory=list)
    """(known name, subtask) pairs in the order given; the subtask may be empty."""
    unknown: list[str] = field(default_factory=list)
    """Names given in the `name: subtask` form that are not specialists, as written."""


def parse_choices(text: str, known: list[str]) -> Choices:
    """Parse lines of the form `name: subtask` (or a bare `name`) from an orchestrator's reply.

    Bullets, numbering and markdown emphasis around names are ignored. A line whose head is a
    single word that is not a known name is reported in `unknown`. When no line names a
    specialist that way, known names mentioned anywhere in the text are taken instead (with an
    empty subtask), so a reply in prose still works. A specialist named twice gets both
    subtasks, joined by a newline.
    """
    by_key = {name_key(n): n for n in known}
    subtasks: dict[str, list[str]] = {}
    unknown: list[str] = []
    for raw in text.splitlines():
        line = _BULLET.sub("", raw).strip()
        if not line:
            continue
        head, sep, rest = line.partition(":")
        head = head.strip(_DECORATION)
        rest = rest.strip() if sep else ""
        name = by_key.get(name_key(head))
        if name is not None:
            subtasks.setdefault(name, [])
            if rest:
                subtasks[name].append(rest)
        elif _TOKEN.match(head) and (sep or " " not in line) and head not in unknown:
            unknown.append(head)
    if not subtasks:
        for name in _mentioned(text, known):
            subtasks[name] = []
    return Choices([(n, "\n".join(parts)) for n, parts in subtasks.items()], unknown)


def _mentioned(text: str, known: list[str]) -> list[str]:
    """Known names that appear as whole words in `text`, in order of first appearance."""
    found: list[tuple[int, str]] = []
    for name in known:
        words = r"[\s_\-]+".join(re.escape(w) for w in re.split(r"[\s_\-]+", name) if w)
        m = re.search(rf"(?<![\w-]){words}(?![\w-])", text, re.IGNORECASE)
        if m:
            found.append((m.start(), name))
    return [n for _, n in sorted(found)]


_DELEGATE = re.compile(
    r"^[\s>*_#\-]*delegate\b[\s*_]*:?[\s*_]*(?:to\b[\s*_]*)?(?P<name>[^:\n]{1,80}?)[\s*_`'\"]*:"
    r"\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_ANSWER = re.compile(r"^[\s>*_#\-]*(?:final[\s_]+)?answer[\s*_]*:[\s*_]*", re.IGNORECASE)
_CONTEXT = re.compile(r"^[\s>*_#\-]*context[\s*_]*:\s*(?P<rest>.*)$", re.IGNORECASE)


@dataclass
class Decision:
    """What a coordinator (or a delegating agent) decided in one reply."""

    kind: Literal["delegate", "answer", "invalid"]
    delegate: Delegate | None = None
    """The handoff, when `kind` is `delegate` (its target is as written, not yet checked)."""
    answer: str = ""
    """The answer, when `kind` is `answer`."""
    dropped: list[str] = field(default_factory=list)
    """Targets of further DELEGATE lines in the same reply: one delegation per turn."""
    problem: str = ""
    """Why the reply is unusable, when `kind` is `invalid`."""


def parse_decision(text: str, *, strict: bool) -> Decision:
    """Parse `DELEGATE <agent>: <task>` (with an optional `CONTEXT: ...` after it) or
    `ANSWER: <text>`.

    The first DELEGATE or ANSWER line decides. A task continues on the lines after its
    DELEGATE line, up to a CONTEXT, DELEGATE or ANSWER line; an answer is everything after
    `ANSWER:`. With `strict` (the coordinator), a reply with neither is invalid; otherwise (an
    agent that may delegate) the whole reply is its answer. An empty answer is invalid.
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        answer = _ANSWER.match(line)
        if answer:
            rest = "\n".join([line[answer.end() :], *lines[i + 1 :]]).strip()
            if not rest:
                return Decision("invalid", problem="its ANSWER: line is empty")
            return Decision("answer", answer=rest)
        delegate = _DELEGATE.match(line)
        if delegate:
            return _delegation(delegate, lines[i + 1 :])
    whole = text.strip()
    if strict:
        problem = (
            "it has neither a DELEGATE line nor an ANSWER line"
            if whole
            else "it is empty; it has neither a DELEGATE line nor an ANSWER line"
        )
        return Decision("invalid", problem=problem)
    if not whole:
        return Decision("invalid", problem="it is empty")
    return Decision("answer", answer=whole)


def _delegation(first: re.Match[str], following: list[str]) -> Decision:
    target = first.group("name").strip(_DECORATION)
    task = [first.group("rest")]
    context: list[str] = []
    current = task
    dropped: list[str] = []
    for j, line in enumerate(following):
        ctx = _CONTEXT.match(line)
        if ctx and current is task:
            current = context
            context.append(ctx.group("rest"))
            continue
        other = _DELEGATE.match(line)
        if other:
            dropped.append(other.group("name").strip(_DECORATION))
            dropped += [
                m.group("name").strip(_DECORATION)
                for m in map(_DELEGATE.match, following[j + 1 :])
                if m
            ]
            break
        if _ANSWER.match(line):
            break
        current.append(line)
    return Decision(
        "delegate",
        delegate=Delegate(
            target=target, task="\n".join(task).strip(), context="\n".join(context).strip()
        ),
        dropped=dropped,
    )
