"""`parse_list`, `parse_dag_plan` and `parse_yes_no`: what the planners understand."""

from __future__ import annotations

import pytest

from flowstate.graphs import DagItem, parse_dag_plan, parse_list, parse_yes_no


@pytest.mark.parametrize(
    ("text", "items"),
    [
        ("1. a\n2. b\n3. c", ["a", "b", "c"]),
        ("1) a\n2) b", ["a", "b"]),
        ("Step 1: a\nStep 2: b", ["a", "b"]),
        ("step 1 - a\nSTEP 2 - b", ["a", "b"]),
        ("**Step 1:** a\n**Step 2:** b", ["a", "b"]),
        ("### Step 1: a\n### Step 2: b", ["a", "b"]),
        ("- a\n- b", ["a", "b"]),
        ("* a\n* b", ["a", "b"]),
        ("(1) a\n(2) b", ["a", "b"]),
        ("Here is my plan:\n\n1. a\n\n2. b\n\n\n3. c\n\nGood luck!", ["a", "b", "c"]),
        ("1. **Research**: find sources\n2. Write", ["Research: find sources", "Write"]),
        ("1. a\n   continued\n2. b", ["a\ncontinued", "b"]),
        ("1. a\n   - detail\n   - more\n2. b", ["a\n- detail\n- more", "b"]),
        ("```\n1. a\n2. b\n```", ["a", "b"]),
        ("The population is 3.5 million.", []),
        ("", []),
    ],
)
def test_parse_list(text: str, items: list[str]) -> None:
    assert parse_list(text) == items


def test_parse_dag_plan_reads_dependency_clauses() -> None:
    text = """Plan:
1. Fetch A (depends on: none)
2. Fetch B
3. Compare (depends on: 1, 2)
4) Write [deps: 3]
Step 5: Send - requires steps 3 and 4
6. Archive
   (depends on 5)
7. **Check** (Depends on: #6)"""
    assert parse_dag_plan(text) == [
        DagItem(1, "Fetch A", []),
        DagItem(2, "Fetch B", []),
        DagItem(3, "Compare", [1, 2]),
        DagItem(4, "Write", [3]),
        DagItem(5, "Send", [3, 4]),
        DagItem(6, "Archive", [5]),
        DagItem(7, "Check", [6]),
    ]


def test_parse_dag_plan_keeps_written_numbers_and_numbers_bullets() -> None:
    assert parse_dag_plan("4. x (depends on: 1)\n5. y") == [DagItem(4, "x", [1]), DagItem(5, "y")]
    assert parse_dag_plan("- x\n- y (after step 1)") == [DagItem(1, "x"), DagItem(2, "y", [1])]
    # "after" without "step" is part of the description
    assert parse_dag_plan("1. Rest after lunch") == [DagItem(1, "Rest after lunch")]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("Yes", True),
        ("yes.", True),
        ("**Yes** - it has parts", True),
        ("Complex.", True),
        ("No", False),
        ("no, it is simple", False),
        ("Not really.", False),
        ("Simple.", False),
        ("I would say yes.", True),
        ("Maybe", None),
        ("", None),
    ],
)
def test_parse_yes_no(text: str, answer: bool | None) -> None:
    assert parse_yes_no(text) is answer
