"""`messages_reducer`: appends that keep a conversation sendable, and refuses the rest."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeFailed
from flowstate.llm import (
    Message,
    TextBlock,
    ToolUseBlock,
    assistant,
    tool_result,
    user,
)
from flowstate.nodes import messages_reducer

CALLS = assistant(
    [
        TextBlock(text="Looking up."),
        ToolUseBlock(id="t1", name="search", input={"q": "a"}),
        ToolUseBlock(id="t2", name="search", input={"q": "b"}),
    ]
)


def test_valid_appends_accumulate() -> None:
    convo = messages_reducer([], [user("hi")])
    convo = messages_reducer(convo, CALLS)  # a single message is accepted too (wrapped)
    assert convo[-1] == CALLS  # an unanswered tool call may end the conversation
    convo = messages_reducer(convo, [user([tool_result("t1", "A"), tool_result("t2", "B")])])
    convo = messages_reducer(convo, [assistant("Done."), user("thanks")])
    assert [m.role for m in convo] == ["user", "assistant", "user", "assistant", "user"]


def test_none_counts_as_an_empty_conversation() -> None:
    assert messages_reducer(None, [user("hi")]) == [user("hi")]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ([], [assistant("hello")], "first message must be a user one"),
        ([user("a")], [user("b")], "messages[0] and messages[1] are both user messages"),
        ([user("a")], [assistant("")], "messages[1] (assistant) is empty"),
        ([user("a")], [assistant([])], "messages[1] (assistant) is empty"),
        ([user("a")], [assistant([TextBlock(text="")])], "empty text block"),
        ([user("a"), CALLS], [user("no results")], "tool_use ids ['t1', 't2'] of messages[1]"),
        (
            [user("a"), CALLS],
            [user([tool_result("t1", "A")])],
            "tool_use ids ['t2'] of messages[1] have no tool_result",
        ),
        (
            [user("a"), CALLS],
            [user([tool_result("t1", "A"), tool_result("t2", "B"), tool_result("t2", "C")])],
            "answers tool_use ids ['t2'] more than once",
        ),
        (
            [user("a"), CALLS],
            [user([tool_result("t1", "A"), tool_result("t2", "B"), tool_result("t9", "?")])],
            "tool_result blocks for ['t9'], which messages[1] did not ask for",
        ),
        ([user("a"), CALLS], [assistant("more")], "both assistant messages"),
        ([user("a")], [user([ToolUseBlock(id="x", name="n", input={})])], "holds a tool_use"),
        (
            [user("a")],
            [Message(role="assistant", content=[tool_result("x", "r")])],
            "holds a tool_result block",
        ),
    ],
)
def test_broken_appends_are_refused_naming_the_problem(
    old: list[Message], new: list[Message], expected: str
) -> None:
    with pytest.raises(ValueError, match="messages_reducer refused to append") as info:
        messages_reducer(old, new)
    assert expected in str(info.value)


def test_every_problem_is_listed() -> None:
    with pytest.raises(ValueError) as info:
        messages_reducer([user("a"), CALLS], [assistant(""), assistant("x")])
    text = str(info.value)
    assert "(1)" in text and "(2)" in text and "(3)" in text


class Chat(BaseModel):
    messages: Annotated[list[Message], messages_reducer] = []


def test_in_a_graph_a_node_that_breaks_the_conversation_fails() -> None:
    def greet(s: Chat) -> dict:
        return {"messages": [assistant("I speak first")]}

    g = GraphBuilder(Chat)
    g.add_node(greet)
    g.add_edge(START, "greet")
    g.add_edge("greet", END)
    app = g.compile(store=":memory:")

    with pytest.raises(NodeFailed) as info:
        app.run_sync({})

    assert info.value.node == "greet"
    from flowstate import UpdateRejected

    # a refused update is an UpdateRejected naming the field; the reducer's error is its cause
    assert isinstance(info.value.__cause__, UpdateRejected)
    assert info.value.__cause__.field == "messages"
    assert isinstance(info.value.__cause__.__cause__, ValueError)
    assert "first message must be a user one" in str(info.value)
    assert app.store.writes(info.value.run_id) == []  # nothing committed
