"""`tool_node`: what it refuses (the error observations and the journal are exercised in
test_agent.py)."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import BaseModel

from flowstate import END, START, GraphBuilder, NodeFailed
from flowstate.llm import Message, assistant, user
from flowstate.nodes import messages_reducer, tool_node


class Chat(BaseModel):
    messages: Annotated[list[Message], messages_reducer] = []


def app_with_tool_node():  # type: ignore[no-untyped-def]
    g = GraphBuilder(Chat)
    g.add_node("run_tools", tool_node([]))
    g.add_edge(START, "run_tools")
    g.add_edge("run_tools", END)
    return g.compile(store=":memory:")


@pytest.mark.parametrize(
    ("messages", "found"),
    [
        ([], "it is empty"),
        ([user("hi"), assistant("hello")], "assistant message without tool_use blocks"),
        ([user("hi")], "user message without tool_use blocks"),
    ],
)
def test_without_tool_calls_to_run_the_node_fails_naming_itself(
    messages: list[Message], found: str
) -> None:
    with pytest.raises(NodeFailed) as info:
        app_with_tool_node().run_sync({"messages": messages})
    cause = str(info.value.__cause__)
    assert "tool node 'run_tools' found no tool calls" in cause
    assert "Chat.messages" in cause and found in cause


def test_the_default_name_and_declared_writes() -> None:
    node = tool_node([], messages_field="chat")
    assert node.__name__ == "tools"
    assert list(node.__annotations__["return"].__annotations__) == ["chat"]
