"""`llm_node`: a graph node that asks a model and writes its answer into the state.

    agent = llm_node(llm, prompt="Answer: {question}", tools=tools, messages_field="messages")
    g.add_node("agent", agent)

The model call is a journaled effect (`JournaledLLM`), so a node that runs again after a crash
gets the recorded answer back instead of calling (and paying for) the model again.
"""

from __future__ import annotations

import inspect
import json
import re
import string
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeAlias

from pydantic import BaseModel, ValidationError

from flowstate.engine import NodeContext
from flowstate.llm import (
    LLM,
    CacheMode,
    JournaledLLM,
    LLMConfigError,
    LLMResponse,
    Message,
    TextBlock,
    Tool,
    ToolChoice,
    ToolRegistry,
    ToolSpec,
    ToolUseBlock,
    assistant,
    thinking_of,
    tool_result,
    user,
)

from ._continue import complete_turn, truncation_reason
from ._errors import LLMOutputError, LLMTruncated
from ._messages import append_problems
from ._signature import annotate_node, require_reducer

__all__ = ["Prompt", "ToolsArg", "llm_node", "registry_of"]

Prompt: TypeAlias = (
    str | Callable[[Any], "str | Message | Sequence[Message] | Awaitable[str | Sequence[Message]]"]
)
"""A `str.format` template over the state's fields, or a function of the state returning the
text of a user message, a message, or a list of messages."""

ToolsArg: TypeAlias = ToolRegistry | Iterable[Tool[..., Any] | Callable[..., Any]] | None
"""Tools as a `ToolRegistry`, or a list of `@tool` functions (or plain typed functions)."""

_TOOL_NAME = re.compile(r"[^a-zA-Z0-9_-]")


def registry_of(tools: ToolsArg) -> ToolRegistry:
    """`tools` as a `ToolRegistry` (an empty one for None)."""
    if tools is None:
        return ToolRegistry()
    if isinstance(tools, ToolRegistry):
        return tools
    return ToolRegistry(list(tools))


def llm_node(
    llm: LLM,
    *,
    prompt: Prompt | None = None,
    system: str | Callable[[Any], str] | None = None,
    output: str | type[BaseModel] | type[str] | None = None,
    output_field: str | None = None,
    messages_field: str | None = None,
    tools: ToolsArg = None,
    name: str | None = None,
    max_tokens: int = 1024,
    output_retries: int = 1,
    stream: bool = True,
    max_continuations: int = 2,
    cache: CacheMode | None = None,
) -> Callable[[Any, NodeContext], Awaitable[dict[str, Any]]]:
    """Build an async node `(state, ctx) -> dict` that calls `llm` once per activation.

    - `prompt`: a template formatted with the state's fields (`"Summarise {doc}"`; nested
      access such as `{doc.title}` works; write a literal brace as `{{`), or a function of the
      state returning a string, a `Message` or a list of messages.
    - `output_field` receives the answer's text; `output` may name that field directly
      (`output="answer"`). When `output` is a pydantic model class, the answer is structured:
      the model is offered one extra tool whose input schema is that class's JSON schema and is
      made to call it with `tool_choice` (`{"type": "tool"}`, or `{"type": "any"}` when other
      tools are offered too); the call's input, validated into the class, goes to
      `output_field`. With extended thinking on, the API refuses a forced tool, so the node
      uses `tool_choice` auto and relies on the instruction plus validation. Either way, an
      answer without a valid call is retried `output_retries` times (default one corrective
      retry) with a correction (as new, journaled calls), then fails the node with
      `LLMOutputError`.
    - `messages_field` (a `list[Message]` field with a reducer such as `messages_reducer`)
      holds the conversation. The model sees that list; the prompt is added as a new user turn
      only when the list is empty or ends with an assistant turn (so a ReAct loop that comes
      back with tool results does not repeat it). The node appends the prompt turn, if any,
      and the model's reply. In the stored reply, the structured-output call is replaced by a
      text block holding its JSON, so the conversation stays valid to continue.
    - `tools` are offered to the model; executing the calls it asks for is `tool_node`'s job,
      so tools need a `messages_field`.

    - An answer cut off at `max_tokens` is continued (the model goes on from where it
      stopped) up to `max_continuations` times; still cut off, or cut off inside a tool call
      (never run), it fails the node with `LLMTruncated` naming max_tokens.
    - `cache`: prompt-cache breakpoints (`"auto"` or `"off"`); by default on for nodes that
      keep a conversation (`messages_field`), which are the ones called again and again.

    Token counts go to the activation's usage (the `usage` column of its `writes` row); live
    calls stream their text as `token` events unless `stream=False`.
    """
    schema: type[BaseModel] | None = None
    node_name = name or "llm"
    if isinstance(output, str):
        if output_field is not None and output_field != output:
            raise LLMConfigError(
                f"llm_node {node_name!r} got output={output!r} and output_field="
                f"{output_field!r}; a string output names the text field, so pass only one"
            )
        output_field = output
    elif isinstance(output, type) and issubclass(output, BaseModel):
        schema = output
        if output_field is None:
            raise LLMConfigError(
                f"llm_node {node_name!r} asks for structured output {output.__name__} but has "
                "no field to write it to: pass output_field='...' (a state field of that type)"
            )
    elif output is not None and output is not str:
        raise LLMConfigError(
            f"llm_node {node_name!r} got output={output!r}; pass a pydantic model class for "
            "structured output, str (or None) for text, or the name of the text field"
        )
    if output_field is None and messages_field is None:
        raise LLMConfigError(
            f"llm_node {node_name!r} would write nothing: pass output_field='answer' for the "
            "text, and/or messages_field='messages' to keep the conversation"
        )
    if prompt is None and messages_field is None:
        raise LLMConfigError(
            f"llm_node {node_name!r} has no prompt and no messages_field, so it has nothing to "
            "ask: pass prompt='...{field}...' or messages_field='messages'"
        )
    registry = registry_of(tools)
    if len(registry) and messages_field is None:
        raise LLMConfigError(
            f"llm_node {node_name!r} offers tools {registry.names} but has no messages_field: "
            "tool calls are answered by a tool_node through the conversation, so pass "
            "messages_field='messages'"
        )
    if output_retries < 0:
        raise LLMConfigError(f"llm_node {node_name!r}: output_retries must be >= 0")
    output_tool: ToolSpec | None = None
    if schema is not None:
        output_tool = _output_tool(schema, node_name)
        if output_tool.name in registry.names:
            raise LLMConfigError(
                f"llm_node {node_name!r}: the structured-output tool is named "
                f"{output_tool.name!r} after {schema.__name__}, and a tool of that name is "
                "registered too; rename the tool or the model class"
            )
    specs = [*registry.specs, *([output_tool] if output_tool else [])]
    caching: CacheMode = cache or ("auto" if messages_field is not None else "off")
    if max_continuations < 0:
        raise LLMConfigError(f"llm_node {node_name!r}: max_continuations must be >= 0")

    async def node(state: Any, ctx: NodeContext) -> dict[str, Any]:
        me = getattr(ctx, "node", None) or node_name
        history: list[Message] = []
        if messages_field is not None:
            history = require_reducer(state, messages_field, me, "llm node")
        new: list[Message] = []
        if not history or history[-1].role == "assistant":
            if prompt is None:
                where = "is empty" if not history else "ends with the model's turn"
                raise ValueError(
                    f"llm node '{me}': {type(state).__name__}.{messages_field} {where} and the "
                    "node has no prompt to add; pass prompt=... or put the user turn in the "
                    "input"
                )
            new = await _render(prompt, state, me)
        _check(history, new, me, "its prompt")
        instructions = system(state) if callable(system) else system
        if output_tool is not None:
            instructions = _structured_instructions(instructions, output_tool.name)
        model = JournaledLLM(llm, ctx, stream=stream)
        conversation = [*history, *new]
        extra: dict[str, Any] = {"cache": caching} if caching != "off" else {}
        if output_tool is not None and thinking_of(llm) is None:
            extra["tool_choice"] = (
                ToolChoice(type="any")
                if len(registry)
                else ToolChoice(type="tool", name=output_tool.name)
            )
        reply, made = await complete_turn(
            model,
            conversation,
            system=instructions,
            tools=specs or None,
            max_tokens=max_tokens,
            max_continuations=max_continuations,
            **extra,
        )
        if reply.truncated:
            raise LLMTruncated(
                f"llm node '{me}': {truncation_reason(reply, max_tokens, made)}", node=me
            )
        update: dict[str, Any] = {}
        if schema is not None and output_tool is not None:
            tries = 0
            while True:
                value, problem = _structured(reply, schema, output_tool.name, registry.names)
                if value is not None or (problem is None and reply.tool_calls):
                    break  # the answer, or calls of the other tools (answered by a tool node)
                assert problem is not None
                if tries >= output_retries:
                    raise LLMOutputError(
                        f"llm node '{me}' asked the model for structured output "
                        f"{schema.__name__} through the tool '{output_tool.name}', but "
                        f"{problem} (after {tries + 1} answer{'s' if tries else ''}); make the "
                        "prompt ask for it, or raise output_retries",
                        node=me,
                    )
                tries += 1
                conversation = [*conversation, *_correction(reply, output_tool.name, problem)]
                reply = await model.complete(
                    conversation, system=instructions, tools=specs, max_tokens=max_tokens, **extra
                )
                if reply.truncated:
                    raise LLMTruncated(
                        f"llm node '{me}': {truncation_reason(reply, max_tokens, 0)}", node=me
                    )
            if value is not None:
                update[output_field] = value  # type: ignore[index]
        elif output_field is not None:
            update[output_field] = reply.text
        if messages_field is not None:
            message = _transcript(reply, output_tool.name if output_tool else None)
            if message is None:
                raise LLMOutputError(
                    f"llm node '{me}': the model answered with an empty message (stop_reason "
                    f"{reply.stop_reason!r}), which cannot be added to the conversation; "
                    "raise max_tokens or change the prompt",
                    node=me,
                )
            _check([*history, *new], [message], me, "the model's reply")
            update[messages_field] = [*new, message]
        return update

    writes: dict[str, Any] = {}
    if output_field is not None:
        writes[output_field] = schema if schema is not None else str
    if messages_field is not None:
        writes[messages_field] = list[Message]
    annotate_node(node, node_name, writes)
    return node


def _output_tool(schema: type[BaseModel], node: str) -> ToolSpec:
    try:
        input_schema = schema.model_json_schema()
    except Exception as exc:
        raise LLMConfigError(
            f"llm_node {node!r}: cannot build a JSON schema for output {schema.__name__} ({exc})"
        ) from exc
    if input_schema.get("type") != "object":
        raise LLMConfigError(
            f"llm_node {node!r}: output {schema.__name__} has a {input_schema.get('type')!r} "
            "schema; structured output needs a model with fields (a JSON object)"
        )
    doc = inspect.getdoc(schema) if schema.__doc__ else None
    return ToolSpec(
        name=_TOOL_NAME.sub("_", schema.__name__)[:64] or "output",
        description=doc or f"Record the final answer as a {schema.__name__}.",
        input_schema=input_schema,
    )


def _structured_instructions(system: str | None, tool_name: str) -> str:
    rule = (
        f"Give your final answer by calling the `{tool_name}` tool exactly once; its input is "
        "the answer."
    )
    return f"{system}\n\n{rule}" if system else rule


def _structured(
    reply: LLMResponse, schema: type[BaseModel], tool_name: str, tools: list[str]
) -> tuple[BaseModel | None, str | None]:
    """The structured answer, or why there is none (neither when it calls the other tools)."""
    calls = [c for c in reply.tool_calls if c.name == tool_name]
    if not calls:
        others = [c.name for c in reply.tool_calls]
        if others and all(n in tools for n in others):
            return None, None  # a turn of the tool loop; the answer comes later
        if others:
            return None, f"the answer calls {others} but not that tool"
        said = f"; it said {reply.text[:200]!r}" if reply.text else ""
        return None, (
            f"the answer (stop_reason {reply.stop_reason!r}) has no call of that tool{said}"
        )
    try:
        return schema.model_validate(calls[-1].input), None
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}"
            for e in exc.errors(include_url=False)
        )
        return None, f"the tool input does not fit {schema.__name__}: {errors}"


def _correction(reply: LLMResponse, tool_name: str, problem: str) -> list[Message]:
    """The turns that tell the model what was wrong with `reply`, for another try."""
    said = reply.to_message() if reply.content else assistant("(no answer)")
    note = f"Your answer could not be used: {problem}. Call the `{tool_name}` tool with the answer."
    if not reply.tool_calls:
        return [said, user(note)]
    skipped = f"Not run: answer by calling only the `{tool_name}` tool."
    return [
        said,
        user(
            [
                tool_result(c.id, note if c.name == tool_name else skipped, is_error=True)
                for c in reply.tool_calls
            ]
        ),
    ]


def _transcript(reply: LLMResponse, output_tool: str | None) -> Message | None:
    """The assistant message to store; the structured-output call becomes its JSON as text."""
    blocks: list[Any] = []
    for block in reply.content:
        if isinstance(block, ToolUseBlock) and block.name == output_tool:
            blocks.append(TextBlock(text=json.dumps(block.input, ensure_ascii=False)))
        elif isinstance(block, TextBlock) and not block.text.strip():
            continue  # the API refuses empty and whitespace-only text blocks
        else:
            blocks.append(block.model_copy(deep=True))
    return Message(role="assistant", content=blocks) if blocks else None


async def _render(prompt: Prompt, state: Any, node: str) -> list[Message]:
    if isinstance(prompt, str):
        out: Any = _format(prompt, state, node)
    else:
        out = prompt(state)
        if inspect.isawaitable(out):
            out = await out
    if isinstance(out, str):
        if not out.strip():
            raise ValueError(f"llm node '{node}': the prompt is empty; the model needs a question")
        return [user(out)]
    if isinstance(out, Message):
        return [out]
    if isinstance(out, Sequence) and all(isinstance(m, Message | dict) for m in out):
        return [m if isinstance(m, Message) else Message.model_validate(m) for m in out]
    raise ValueError(
        f"llm node '{node}': the prompt function returned {type(out).__name__}; return a str, "
        "a Message or a list of Message"
    )


def _format(template: str, state: Any, node: str) -> str:
    fields = {f: getattr(state, f) for f in type(state).model_fields}
    try:
        names = [n for _, n, _, _ in string.Formatter().parse(template) if n is not None]
    except ValueError as exc:
        raise ValueError(
            f"llm node '{node}': the prompt template is malformed ({exc}); write a literal "
            "brace as '{{' or '}}'"
        ) from None
    roots = [re.split(r"[.\[]", n, maxsplit=1)[0] for n in names]
    if any(r == "" or r.isdigit() for r in roots):
        raise ValueError(
            f"llm node '{node}': the prompt template has a positional placeholder ('{{}}'); "
            "name a state field instead, e.g. '{question}'"
        )
    missing = sorted({r for r in roots if r not in fields})
    if missing:
        shown = ", ".join(f"{{{m}}}" for m in missing)
        raise ValueError(
            f"llm node '{node}': the prompt template refers to {shown}, but "
            f"{type(state).__name__} has no field {', '.join(repr(m) for m in missing)} "
            f"(fields: {', '.join(fields) or 'none'}); fix the name or add the field"
        )
    try:
        return template.format(**fields)
    except (AttributeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise ValueError(
            f"llm node '{node}': the prompt template could not be filled from the state: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _check(old: list[Message], new: list[Message], node: str, what: str) -> None:
    problems = append_problems(old, new)
    if problems:
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(problems, 1))
        raise ValueError(f"llm node '{node}': {what} would break the conversation: {listed}")
