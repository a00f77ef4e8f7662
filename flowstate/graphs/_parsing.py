"""Parsers for what models write: ReAct turns, numbered plans, plans with dependencies, yes/no.

Every parser is a pure function of the text and never raises on bad model output: it returns
what it could read plus a description of what is wrong, so the agent can show the model its
mistake and ask again (bounded by the agent's step or replan limit).

    parse_react('Thought: look it up\\nAction: search({"query": "Lyon"})')
    # ReActParse(thought='look it up', tool='search', tool_input={'query': 'Lyon'}, ...)
    parse_list("Here is the plan:\\n1. Find data\\n2) Analyse it\\n\\nStep 3: Report")
    # ['Find data', 'Analyse it', 'Report']
    parse_dag_plan("1. Fetch A\\n2. Fetch B\\n3. Compare (depends on: 1, 2)")
    # [DagItem(1, 'Fetch A', []), DagItem(2, 'Fetch B', []), DagItem(3, 'Compare', [1, 2])]
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DagItem",
    "ListItem",
    "ReActParse",
    "parse_dag_plan",
    "parse_list",
    "parse_list_items",
    "parse_react",
    "parse_tool_input",
    "parse_yes_no",
]

# -- lists ------------------------------------------------------------------------------------

_MARKER = re.compile(
    r"""^(?P<indent>[ \t]*)
        (?:\#{1,6}[ \t]*)?                                   # a markdown heading
        (?:\*\*|__)?                                         # bold around the marker
        (?:
            (?:step|task|subtask)[ \t]*\#?(?P<step>\d+)[ \t]*(?:\*\*|__)?[ \t]*[:.)\-–—]
          | (?P<num>\d+)[.):]
          | \((?P<paren>\d+)\)
          | (?P<bullet>[-*•+])
        )
        (?:\*\*|__)?
        (?:[ \t]+|(?<=[:.)\-–—])(?=\S))                     # "1. x", "Step 1:x"
        (?P<text>\S.*)$
    """,
    re.IGNORECASE | re.VERBOSE,
)


@dataclass
class ListItem:
    """One top-level item of a list in model output."""

    number: int | None
    """The item's own number ("3." or "Step 3:"), or None for a bullet."""
    text: str
    """The item's text, continuation lines and nested items included (one per line)."""


def _clean(text: str) -> str:
    text = text.strip()
    for mark in ("**", "__"):
        if text.startswith(mark) and text.endswith(mark) and len(text) > 2 * len(mark):
            text = text[len(mark) : -len(mark)].strip()
    # "**Research**: find sources" -> "Research: find sources"
    text = re.sub(r"^\*\*(.+?)\*\*", r"\1", text)
    return text.strip()


def parse_list_items(text: str) -> list[ListItem]:
    """The top-level items of the first list style found in `text`, in order.

    Accepts `1.`, `1)`, `1:`, `(1)`, `Step 1:` (any case, in bold or a heading), and bullets
    (`-`, `*`, `•`, `+`). Text before the first item is ignored; blank lines between items
    are fine. An indented line, a nested item, or a line directly under an item continues that
    item; an unindented line after a blank line is closing prose and is ignored.
    """
    items: list[ListItem] = []
    top_kind: str | None = None
    top_indent = 0
    after_blank = False
    for line in text.splitlines():
        if not line.strip() or line.strip().startswith("```"):
            after_blank = True
            continue
        m = _MARKER.match(line)
        if m is not None:
            kind = "bullet" if m["bullet"] else "number"
            indent = len(m["indent"].expandtabs(4))
            if top_kind is None:
                top_kind, top_indent = kind, indent
            if kind == top_kind and indent <= top_indent:
                raw = m["step"] or m["num"] or m["paren"]
                items.append(ListItem(int(raw) if raw else None, _clean(m["text"])))
                after_blank = False
                continue
        if items and (line[:1].isspace() or not after_blank or m is not None):
            extra = _clean(line)
            items[-1].text = f"{items[-1].text}\n{extra}" if items[-1].text else extra
            after_blank = False
        # otherwise: a preamble before the list, or closing prose after it
    return [i for i in items if i.text]


def parse_list(text: str) -> list[str]:
    """The texts of the top-level list items of `text` (see `parse_list_items`)."""
    return [i.text for i in parse_list_items(text)]


# -- plans with dependencies ------------------------------------------------------------------

_NUM_LIST = r"(?:steps?[ \t]*)?\#?\d+(?:[ \t]*(?:,|and|&|/|;)[ \t]*(?:steps?[ \t]*)?\#?\d+)*"
_DEPENDS = re.compile(
    r"[ \t]*[(\[]?[ \t]*(?:\*\*|_)?"
    r"(?:depends[ \t]+(?:on|upon)|dependencies|deps|requires|needs|after(?=[ \t]+steps?\b))"
    r"(?:\*\*|_)?[ \t]*:?[ \t]*(?:\*\*|_)?[ \t]*"
    r"(?P<deps>none|nothing|n/a|no[ \t]+dependencies|-|—|" + _NUM_LIST + r")"
    r"[ \t]*[)\]]?\.?",
    re.IGNORECASE,
)


@dataclass
class DagItem:
    """One step of a plan with dependencies."""

    number: int
    """The step's number as written ("3." → 3), or its position when it had none."""
    description: str
    """What to do, without the dependency clause."""
    depends_on: list[int] = field(default_factory=list)
    """Numbers of the steps it waits for, as written (not validated here)."""


def parse_dag_plan(text: str) -> list[DagItem]:
    """Numbered steps with optional dependency clauses, in order.

    `3. Write report (depends on: 1, 2)`, `3) Write report [deps: 1 and 2]`, `Step 3: Write
    report - requires steps 1, 2` and `(depends on: none)` are all understood; a clause on the
    line under the step works too. Numbers are not checked here: `validate_dag` does that.
    """
    out: list[DagItem] = []
    for position, item in enumerate(parse_list_items(text), 1):
        deps: list[int] = []
        description = item.text
        m = _DEPENDS.search(description)
        if m is not None:
            deps = [int(n) for n in re.findall(r"\d+", m["deps"])]
            description = (description[: m.start()] + description[m.end() :]).strip()
            description = re.sub(r"[ \t]*[-–—:,;]\s*$", "", description).strip()
        number = item.number if item.number is not None else position
        out.append(DagItem(number, description or item.text, sorted(set(deps))))
    return out


# -- yes / no ---------------------------------------------------------------------------------

_YES = {"yes", "y", "true", "complex", "yep", "yeah", "correct"}
_NO = {"no", "n", "false", "simple", "nope", "not"}


def parse_yes_no(text: str) -> bool | None:
    """True for a yes, False for a no, None when the answer is unclear.

    The first word decides ("Yes.", "**No** - it is simple", "complex"); failing that, a reply
    that contains only one of the words yes/no is read as that word.
    """
    words = re.findall(r"[a-z]+", text.lower())
    if not words:
        return None
    if words[0] in _YES:
        return True
    if words[0] in _NO:
        return False
    has_yes, has_no = "yes" in words, "no" in words
    if has_yes != has_no:
        return has_yes
    return None


# -- ReAct turns ------------------------------------------------------------------------------

_LABEL = re.compile(
    r"^[ \t>#*_]*(?P<label>thought|action[ _]input|action|final[ _]answer|observation)"
    r"[ \t*_]*:[ \t*_]*",
    re.IGNORECASE | re.MULTILINE,
)
_INLINE_FINAL = re.compile(r"final[ _]answer[ \t*_]*:[ \t*_]*", re.IGNORECASE)
_TOOL_NAME = re.compile(r"^`*(?P<name>[A-Za-z_][A-Za-z0-9_.\-]*)`*[ \t]*(?P<rest>.*)$", re.DOTALL)
_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(?P<body>.*?)\n?```$", re.DOTALL)


@dataclass(frozen=True)
class ReActParse:
    """What one text-protocol turn of a ReAct model said."""

    thought: str
    """The reasoning before the action or answer (without the `Thought:` label)."""
    tool: str | None = None
    """The tool named in `Action:`, or None."""
    tool_input: dict[str, Any] | str | None = None
    """Its input: a JSON object, or a plain string when the model wrote one."""
    final_answer: str | None = None
    """The text after `Final Answer:`, or None."""
    error: str | None = None
    """Why the turn has neither a usable action nor a final answer (None when it has one)."""
    text: str = ""
    """The part of the reply that counts: anything the model wrote after its action (an
    invented `Observation:`, a premature answer) is cut off."""


def _labels(text: str) -> list[tuple[str, int, int]]:
    return [
        (m["label"].lower().replace("_", " "), m.start(), m.end()) for m in _LABEL.finditer(text)
    ]


def parse_react(text: str) -> ReActParse:
    """Read a `Thought: … / Action: tool({json}) / Final Answer: …` turn.

    The first `Action:` or `Final Answer:` wins (what follows it is the model running ahead).
    The thought may span lines and may lack its label. Action input may be a JSON object,
    a Python-style dict, `key=value` arguments, a quoted or plain string, or an
    `Action Input:` line; see `parse_tool_input`.
    """
    labels = _labels(text)
    decisive = [x for x in labels if x[0] in ("action", "final answer")]
    if not decisive:
        inline = _INLINE_FINAL.search(text)
        if inline is not None:  # "Thought: easy. Final Answer: 42" on one line
            return _final(text, inline.start(), inline.end(), len(text))
        error = (
            "your reply was empty"
            if not text.strip()
            else "your reply has neither an `Action:` line nor a `Final Answer:` line"
        )
        return ReActParse(thought=_strip_label(text.strip()), error=error, text=text.strip())
    label, start, end = decisive[0]
    later = [x for x in labels if x[1] > start]
    if label == "final answer":
        stop = next((x[1] for x in later if x[0] != "final answer"), len(text))
        return _final(text, start, end, stop)
    # an action, maybe with an "Action Input:" right after it
    input_text: str | None = None
    if later and later[0][0] == "action input":
        _, in_start, in_end = later[0]
        stop = later[1][1] if len(later) > 1 else len(text)
        input_text = text[in_end:stop].strip()
        action_text = text[end:in_start].strip()
    else:
        stop = later[0][1] if later else len(text)
        action_text = text[end:stop].strip()
    thought = _strip_label(text[:start].strip())
    kept = text[:stop].rstrip()
    m = _TOOL_NAME.match(_unfence(action_text))
    if m is None:
        return ReActParse(
            thought=thought,
            error=f"the `Action:` line {action_text[:80]!r} does not start with a tool name",
            text=kept,
        )
    rest = m["rest"].strip()
    if input_text is not None and not rest:
        raw_input = input_text
    elif rest.startswith("("):
        raw_input = _balanced(rest)
    else:
        raw_input = rest.lstrip(":").strip()
    return ReActParse(
        thought=thought, tool=m["name"], tool_input=parse_tool_input(raw_input), text=kept
    )


def _final(text: str, start: int, end: int, stop: int) -> ReActParse:
    answer = text[end:stop].strip()
    thought = _strip_label(text[:start].strip())
    if not answer:
        return ReActParse(
            thought=thought, error="your `Final Answer:` is empty", text=text[:stop].rstrip()
        )
    return ReActParse(thought=thought, final_answer=answer, text=text[:stop].rstrip())


def _strip_label(text: str) -> str:
    return _LABEL.sub("", text, count=1).strip() if _LABEL.match(text) else text


def _unfence(text: str) -> str:
    text = text.strip()
    m = _FENCE.match(text)
    if m is not None:
        return m["body"].strip()
    if text.startswith("`") and text.endswith("`") and len(text) > 1:
        return text.strip("`").strip()
    return text


def _balanced(rest: str) -> str:
    """The text inside the parenthesis that opens `rest` (up to its matching close, so prose
    after it is dropped; everything after it when it never closes: the model was cut off)."""
    depth = 0
    quote: str | None = None
    escaped = False
    for i, ch in enumerate(rest):
        if quote is not None:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = None
            continue
        if ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return rest[1:i]
    return rest[1:]


def parse_tool_input(raw: str) -> dict[str, Any] | str:
    """A tool input as the model wrote it: a dict when it wrote an object, else a string.

    Tries, in order: JSON, a Python literal (`{'q': 'x'}`), keyword arguments (`q="x", n=3`),
    then takes the text itself (without surrounding quotes). `""` gives `{}`.
    """
    s = _unfence(raw.strip())
    if not s:
        return {}
    try:
        value = json.loads(s)
    except ValueError:
        pass
    else:
        if isinstance(value, dict):
            return value
        if isinstance(value, str):
            return value
        return s
    try:
        value = ast.literal_eval(s)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        pass
    else:
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
        if isinstance(value, str):
            return value
        return s
    kwargs = _keyword_arguments(s)
    if kwargs is not None:
        return kwargs
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "\"'":
        return s[1:-1]
    return s


def _keyword_arguments(s: str) -> dict[str, Any] | None:
    try:
        call = ast.parse(f"_({s})", mode="eval").body
    except (SyntaxError, ValueError, MemoryError, RecursionError):
        return None
    if not isinstance(call, ast.Call) or call.args or not call.keywords:
        return None
    out: dict[str, Any] = {}
    for kw in call.keywords:
        if kw.arg is None:
            return None
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except (ValueError, SyntaxError, TypeError):
            return None
    return out
