"""`tool_node`: a graph node that runs the tool calls of the model's last turn.

    g.add_node("tools", tool_node([search, calculator]))
    g.add_conditional_edges("agent", wants_tools)   # "tools" while the model calls tools
    g.add_edge("tools", "agent")

Each call is a journaled effect (`JournaledTools`): after a crash in the middle of a batch,
the node runs again and only the calls that had not completed are performed again.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from flowstate.engine import NodeContext
from flowstate.llm import JournaledTools, Message, ToolCall, ToolUseBlock, user

from ._llm_node import ToolsArg, registry_of
from ._messages import append_problems
from ._signature import annotate_node, require_reducer

__all__ = ["tool_node"]


def tool_node(
    tools: ToolsArg, *, messages_field: str = "messages", name: str | None = None
) -> Callable[[Any, NodeContext], Awaitable[dict[str, Any]]]:
    """Build an async node `(state, ctx) -> dict` that answers the model's tool calls.

    It reads the last message of `messages_field`, which must be an assistant message with
    `tool_use` blocks, runs the calls concurrently, and appends one user message holding a
    `tool_result` per call, in call order. A tool that raises, an unknown tool and invalid
    arguments become results with `is_error=True`, so the model sees the error and the run
    goes on.
    """
    registry = registry_of(tools)
    node_name = name or "tools"

    async def node(state: Any, ctx: NodeContext) -> dict[str, Any]:
        me = getattr(ctx, "node", None) or node_name
        history = require_reducer(state, messages_field, me, "tool node")
        last = history[-1] if history else None
        calls = [
            ToolCall(id=b.id, name=b.name, input=b.input)
            for b in (last.blocks if last is not None and last.role == "assistant" else [])
            if isinstance(b, ToolUseBlock)
        ]
        if not calls:
            found = (
                "it is empty"
                if last is None
                else f"its last message is a {last.role} message without tool_use blocks"
            )
            raise ValueError(
                f"tool node '{me}' found no tool calls to run in "
                f"{type(state).__name__}.{messages_field}: {found}; route to it only when the "
                "model's last turn calls tools"
            )
        outcomes = await JournaledTools(registry, ctx).run_calls(calls)
        message = user([o.to_block() for o in outcomes])
        problems = append_problems(history, [message])
        if problems:  # cannot happen with one result per call, but name the node if it does
            raise ValueError(
                f"tool node '{me}': its results would break the conversation: "
                + "; ".join(problems)
            )
        return {messages_field: [message]}

    annotate_node(node, node_name, {messages_field: list[Message]})
    return node
