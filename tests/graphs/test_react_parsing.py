"""`parse_react` and `parse_tool_input`: what the text protocol understands."""

from __future__ import annotations

from typing import Any

import pytest

from flowstate.graphs import parse_react, parse_tool_input


@pytest.mark.parametrize(
    ("text", "tool", "tool_input"),
    [
        ('Thought: look\nAction: search({"query": "Lyon"})', "search", {"query": "Lyon"}),
        ("Action: search(Lyon population)", "search", "Lyon population"),
        ('Action: search("Lyon")', "search", "Lyon"),
        ("Action: search({'query': 'Lyon'})", "search", {"query": "Lyon"}),
        ('Action: search(query="Lyon", limit=3)', "search", {"query": "Lyon", "limit": 3}),
        ("Action: search()", "search", {}),
        ('Action: search {"query": "x"}', "search", {"query": "x"}),
        ('**Action:** `search`\nAction Input: {"query": "x"}', "search", {"query": "x"}),
        (
            'Action: search({\n  "query": "two\\nlines"\n})\nI will wait.',
            "search",
            {"query": "two\nlines"},
        ),
        ("Action: calc(2 + (3 * 4))", "calc", "2 + (3 * 4)"),
        ("Action: calc(12)", "calc", "12"),
        ('Action:\n```json\nsearch({"q": 1})\n```', "search", {"q": 1}),
    ],
)
def test_actions(text: str, tool: str, tool_input: Any) -> None:
    parsed = parse_react(text)
    assert (parsed.tool, parsed.tool_input, parsed.error) == (tool, tool_input, None)
    assert parsed.final_answer is None


def test_multi_line_thoughts_with_or_without_a_label() -> None:
    parsed = parse_react("Thought: first line\nsecond line\n\nAction: search(x)")
    assert parsed.thought == "first line\nsecond line"
    parsed = parse_react("I should look this up.\nAction: search(x)")
    assert parsed.thought == "I should look this up."


def test_final_answers() -> None:
    parsed = parse_react("Thought: I know it\nFinal Answer: 42\nand some detail")
    assert (parsed.thought, parsed.final_answer) == ("I know it", "42\nand some detail")
    assert parse_react("Thought: easy. Final Answer: 42").final_answer == "42"
    assert parse_react("**Final Answer:** Paris").final_answer == "Paris"


def test_the_first_decision_wins_and_invented_observations_are_cut() -> None:
    parsed = parse_react(
        "Thought: look\nAction: search(x)\nObservation: made up\nThought: so\nFinal Answer: 1"
    )
    assert (parsed.tool, parsed.final_answer) == ("search", None)
    assert parsed.text == "Thought: look\nAction: search(x)"
    parsed = parse_react("Final Answer: 1\nAction: search(x)")
    assert (parsed.tool, parsed.final_answer, parsed.text) == (None, "1", "Final Answer: 1")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("", "your reply was empty"),
        ("I think it is 42.", "neither an `Action:` line nor a `Final Answer:` line"),
        ("Thought: hmm\nFinal Answer:   ", "your `Final Answer:` is empty"),
        ("Action: 42things", "does not start with a tool name"),
    ],
)
def test_unusable_replies_say_why(text: str, error: str) -> None:
    parsed = parse_react(text)
    assert parsed.tool is None and parsed.final_answer is None
    assert parsed.error is not None and error in parsed.error


def test_tool_input_fallbacks() -> None:
    assert parse_tool_input("") == {}
    assert parse_tool_input("[1, 2]") == "[1, 2]"
    assert parse_tool_input("'quoted'") == "quoted"
    assert parse_tool_input("not json {") == "not json {"
    assert parse_tool_input("a=1, b=x") == "a=1, b=x"  # not literals: kept as text
