"""The LLM layer: one `LLM` protocol, the Anthropic backend, a scripted model, and tools.

    llm = AnthropicLLM("claude-sonnet-4-5")          # or ScriptedLLM([...]) offline
    tools = ToolRegistry([search, calculator])       # functions decorated with @tool
    messages = [user("What is 6 * 7?")]
    reply = await llm.complete(messages, tools=tools.specs)
    while reply.tool_calls:
        outcomes = await tools.run_calls(reply.tool_calls)
        messages += [reply.to_message(), user([o.to_block() for o in outcomes])]
        reply = await llm.complete(messages, tools=tools.specs)

Requests, responses and tool outcomes are JSON-serialisable pydantic data, so the engine can
journal them and replay a run without calling the model again. Inside a node, wrap the model and
the tools with `JournaledLLM(llm, ctx)` and `JournaledTools(tools, ctx)` to do exactly that.
"""

import inspect as _inspect

from ._anthropic import DEFAULT_ANTHROPIC_MODEL, AnthropicLLM
from ._errors import LLMConfigError, LLMError, ScriptExhausted, ToolInputError
from ._journaled import EffectContext, JournaledLLM, JournaledTools, thinking_of
from ._limited import Limiter, RateLimitedLLM
from ._models import (
    NO_RESULT,
    CacheMode,
    ContentBlock,
    LLMRequest,
    LLMResponse,
    Message,
    RedactedThinkingBlock,
    Role,
    TextBlock,
    ThinkingBlock,
    ToolCall,
    ToolChoice,
    ToolResultBlock,
    ToolSpec,
    ToolUseBlock,
    Usage,
    assistant,
    clean_conversation,
    conversation_problems,
    tool_result,
    user,
)
from ._prices import DEFAULT_PRICES, ModelPrice, price_of, split_usage, usage_cost
from ._protocol import LLM, TokenCallback
from ._scripted import (
    SCRIPTED_TOOL_ID_PREFIX,
    ScriptedLLM,
    ScriptFunction,
    ScriptItem,
)
from ._spec import llm_from_spec
from ._tools import Tool, ToolOutcome, ToolRegistry, tool

__all__ = [
    "DEFAULT_ANTHROPIC_MODEL",
    "DEFAULT_PRICES",
    "LLM",
    "NO_RESULT",
    "SCRIPTED_TOOL_ID_PREFIX",
    "AnthropicLLM",
    "CacheMode",
    "ContentBlock",
    "EffectContext",
    "JournaledLLM",
    "JournaledTools",
    "LLMConfigError",
    "LLMError",
    "LLMRequest",
    "LLMResponse",
    "Limiter",
    "Message",
    "ModelPrice",
    "RateLimitedLLM",
    "RedactedThinkingBlock",
    "Role",
    "ScriptExhausted",
    "ScriptFunction",
    "ScriptItem",
    "ScriptedLLM",
    "TextBlock",
    "ThinkingBlock",
    "TokenCallback",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolInputError",
    "ToolOutcome",
    "ToolRegistry",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "Usage",
    "assistant",
    "clean_conversation",
    "conversation_problems",
    "llm_from_spec",
    "price_of",
    "split_usage",
    "thinking_of",
    "tool",
    "tool_result",
    "usage_cost",
    "user",
]


# Show the public path in reprs and tracebacks (flowstate.llm.Message, not ..._models.Message).
def _show_public_path() -> None:
    for name in __all__:
        obj = globals()[name]
        if isinstance(obj, type) or _inspect.isfunction(obj):
            obj.__module__ = __name__


_show_public_path()
del _show_public_path
