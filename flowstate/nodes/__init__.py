"""Prebuilt node kinds for LLM agents: a model node, a tool node, and what they share.

    class State(BaseModel):
        question: str
        messages: Annotated[list[Message], messages_reducer] = []

    g = GraphBuilder(State)
    g.add_node("agent", llm_node(llm, prompt="{question}", tools=tools, messages_field="messages"))
    g.add_node("tools", tool_node(tools))
    g.add_edge(START, "agent")
    g.add_conditional_edges("agent", route)     # "tools" while the model calls tools, else END
    g.add_edge("tools", "agent")

Model and tool calls are journaled effects, so a resumed run never calls the model or a
finished tool again; token counts land in each activation's `usage` and `run_usage` sums them.
"""

import inspect as _inspect

from ._continue import complete_turn, truncation_reason
from ._errors import LLMOutputError, LLMTruncated
from ._llm_node import llm_node
from ._messages import messages_reducer
from ._tool_node import tool_node
from ._usage import UsageLine, UsageReport, node_usage, run_usage, usage_report

__all__ = [
    "LLMOutputError",
    "LLMTruncated",
    "UsageLine",
    "UsageReport",
    "complete_turn",
    "llm_node",
    "messages_reducer",
    "node_usage",
    "run_usage",
    "tool_node",
    "truncation_reason",
    "usage_report",
]


def _show_public_path() -> None:
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) or _inspect.isfunction(obj):
            obj.__module__ = __name__


_show_public_path()
del _show_public_path
