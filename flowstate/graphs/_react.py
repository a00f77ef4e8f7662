"""`react_agent`: a Reason → Act → Observe loop as a graph of three nodes.

    app = react_agent(llm, [search, calculator], max_steps=8).compile(store="runs.db")
    result = app.run_sync({"task": "How many people live in Lyon and Nantes together?"})
    result.state.status, result.state.answer      # "answered", "845454"

    START → reason ─┬→ act ──→ reason …        (the model chose a tool)
                    ├→ reason                  (unusable reply: asked again with a correction)
                    └→ finish → END            (final answer, step limit, or refusal)

`reason` asks the model through `JournaledLLM` and `act` runs tools through `JournaledTools`,
so both are journaled effects: a resumed run never calls the model or a finished tool again,
and `replay` rebuilds the run without calling anything. The builder is returned uncompiled:
compile it, or add the compiled graph as a subgraph node of a bigger graph (it shares the
fields `task`, `steps`, `messages`, `answer`, `status` by name).

Two protocols:

- `"native"`: Anthropic tool use. The tools' specs come from the registry; a reply with tool
  calls is an action (several calls run concurrently), a reply with text only is the answer.
- `"text"`: the model writes `Thought: …`, then `Action: tool_name({json})` or
  `Final Answer: …` (see `flowstate.graphs.parse_react` for what is understood). Works with
  any model.
"""

import json
from typing import Annotated, Any, Literal, TypeAlias

from pydantic import BaseModel, Field

from flowstate.engine import END, START, GraphBuilder, NodeContext, RetryPolicy, append
from flowstate.llm import (
    LLM,
    CacheMode,
    JournaledLLM,
    JournaledTools,
    LLMResponse,
    Message,
    TextBlock,
    Tool,
    ToolCall,
    ToolOutcome,
    assistant,
    tool_result,
    user,
)
from flowstate.nodes import complete_turn, messages_reducer, truncation_reason

from ._common import (
    MemorySpec,
    ToolsArg,
    clip,
    describe_tools,
    memory_spec,
    note,
    recall,
    registry_of,
    remember,
    with_memories,
)
from ._parsing import parse_react

__all__ = [
    "FinalAnswer",
    "Observation",
    "ReActAction",
    "ReActState",
    "ReActStatus",
    "ReActStep",
    "ToolAction",
    "react_agent",
    "react_turn",
]

ReActStatus: TypeAlias = Literal["running", "answered", "max_steps", "truncated", "failed"]
"""Where a ReAct run stands.

- `"running"`: the loop has not finished.
- `"answered"`: the model gave a final answer (in `ReActState.answer`).
- `"max_steps"`: `max_steps` model calls were made without a final answer; `answer` is None.
- `"truncated"`: the model's turn hit `max_tokens` and was still cut off after
  `max_continuations` continuations, or was cut off inside a tool call (never run); `answer`
  is None and `ReActState.error` says which and how to fix it (raise `max_tokens`).
- `"failed"`: the model refused or cannot continue; `ReActState.error` says why.
"""

Protocol: TypeAlias = Literal["native", "text"]
"""How the model calls tools: Anthropic tool use, or `Action:` lines in its text."""

STOP_SEQUENCE = "Observation:"
"""Stop sequence of the text protocol: the model stops before writing an observation itself."""
NOT_RUN = "not run: the step limit (max_steps) was reached before this tool call could run"
"""Tool result given to tool calls the model asked for in its last allowed step (native
protocol), so the conversation stays valid for the provider."""
EMPTY_REPLY = "(empty reply)"
"""Stands in for an empty model turn in the transcript (the API refuses empty messages)."""


class ToolAction(BaseModel):
    """The model asked for a tool call."""

    kind: Literal["tool"] = "tool"
    """Discriminator; always `"tool"`."""
    tool: str
    """Name of the tool the model called (possibly one that does not exist)."""
    input: dict[str, Any] | str = Field(default_factory=dict)
    """Its arguments: a JSON object, or the plain string a text-protocol model wrote."""
    id: str | None = None
    """The `tool_use` id (native protocol), or None."""


class FinalAnswer(BaseModel):
    """The model answered the task."""

    kind: Literal["final_answer"] = "final_answer"
    """Discriminator; always `"final_answer"`."""
    answer: str
    """The answer."""


ReActAction = Annotated[ToolAction | FinalAnswer, Field(discriminator="kind")]
"""What a step did: call a tool or answer."""


class Observation(BaseModel):
    """What came back from an action, or why the model's turn could not be used."""

    content: str
    """The tool's output, or the error the model is shown."""
    success: bool = True
    """False for a tool error, an unknown tool, bad input, or an unusable reply."""


class ReActStep(BaseModel):
    """One thought → action → observation of the loop."""

    thought: str = ""
    """The model's reasoning (text before its action; empty when it gave none)."""
    action: ReActAction | None = None
    """What it did; None when its reply had neither a usable action nor an answer."""
    observation: Observation | None = None
    """The result of the action, or the correction it was sent; None for a final answer and
    for a tool call left unrun because the step limit was reached."""
    stop_reason: str | None = None
    """Why the model's turn ended (`end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, …),
    as the provider said; on the first step of each turn."""


class ReActState(BaseModel):
    """State of a ReAct run. Only `task` is required as input."""

    task: str
    """What to do or answer."""
    steps: Annotated[list[ReActStep], append] = []
    """Every step so far, in order."""
    messages: Annotated[list[Message], messages_reducer] = []
    """The conversation with the model (tool calls and results included); always a valid
    Messages API conversation. Empty on input, the agent starts it with `task` as the user's
    message; given on input (ending with a user message), the agent continues it."""
    answer: str | None = None
    """The final answer; None unless `status` is `"answered"`."""
    status: ReActStatus = "running"
    """Where the run stands (see `ReActStatus`)."""
    error: str | None = None
    """Why the run ended without an answer (`"max_steps"`, `"truncated"` or `"failed"`)."""
    turns: int = 0
    """Model calls made so far (bounded by `max_steps`)."""
    pending: list[ReActStep] = []
    """Tool calls chosen by the last model turn and not run yet (for `act`)."""


_TEXT_SYSTEM = """\
Solve the task step by step. In each turn, first think, then either use one tool or answer.

Tools you can use:
{tools}

To use a tool, reply exactly like this and then stop (its result comes back as an
"Observation:" message):
Thought: <your reasoning>
Action: <tool name>(<JSON object with the tool's input>)

When you know the answer, reply:
Thought: <your reasoning>
Final Answer: <the answer>"""

_TEXT_SYSTEM_NO_TOOLS = """\
Solve the task. Think first, then answer, in exactly this format:
Thought: <your reasoning>
Final Answer: <the answer>"""

_CORRECTION = (
    "I could not use your reply: {error}. Reply in the required format: either\n"
    "Thought: <your reasoning>\nAction: <tool name>(<JSON input>)\n"
    "or\nThought: <your reasoning>\nFinal Answer: <the answer>"
)
_NATIVE_EMPTY = (
    "Your reply was empty. Call one of the tools, or reply with the final answer as text."
)


def react_turn(message: str) -> dict[str, Any]:
    """The input of the next turn of a ReAct agent on a thread (a chat): the user's
    `message` appended to the conversation, and the loop's bookkeeping of the last turn
    (`status`, `answer`, `error`, `turns`, `pending`) reset, so the agent answers it seeing
    every earlier turn's messages:

        app.run_sync({"task": "Population of Lyon?"}, thread_id="chat")
        app.run_sync(react_turn("And of Nantes?"), thread_id="chat")
    """
    return {
        "task": message,
        "messages": [user(message)],
        "answer": None,
        "status": "running",
        "error": None,
        "turns": 0,
        "pending": [],
    }


def react_agent(
    llm: LLM,
    tools: ToolsArg = None,
    *,
    max_steps: int = 10,
    protocol: Protocol = "native",
    system: str | None = None,
    name: str = "react_agent",
    max_tokens: int = 1024,
    retry: RetryPolicy | int | None = None,
    memory: MemorySpec | None = None,
    max_continuations: int = 2,
    cache: CacheMode = "auto",
) -> GraphBuilder[ReActState]:
    """A ReAct agent as a graph builder over `ReActState`: compile it, or use it as a subgraph.

    `max_steps` bounds the model calls of a run: when it is reached without a final answer the
    run completes with `status="max_steps"` and `answer=None` (tool calls the model asked for
    in its last allowed turn are recorded but not run). An unknown tool, invalid tool input
    or a tool that raises becomes an observation with `success=False` that the model sees;
    an unusable reply (no action and no answer) is answered with a correction and costs a
    step. `system` is added to the system prompt; `retry` is the `RetryPolicy` of the model
    node (a failing model call otherwise fails the run, which can be resumed).

    With `memory` (a `MemorySpec`), each model call first recalls the `memory.k` memories
    most relevant to `task` (a journaled read) and, when there are any, gets them in its
    system prompt as a `Relevant memories:` block; the tool results (`act`) and the final
    answer are added to the memory, committed with the node that produced them.

    A turn cut off at `max_tokens` is continued up to `max_continuations` times; still cut off
    (or cut off inside a tool call, which is never run) the run ends with status
    `"truncated"` and the reason in `error`. Each step records the turn's `stop_reason`.
    `cache="auto"` (the default) puts prompt-cache breakpoints on the system prompt, the tools
    and the conversation so far, so each turn reads the previous turns from the cache. The
    text protocol sends the stop sequence `Observation:`, so the model cannot write the
    observation itself.
    """
    if max_steps < 1:
        raise ValueError(f"react_agent(max_steps={max_steps}): allow at least one model call")
    if protocol not in ("native", "text"):
        raise ValueError(f"react_agent(protocol={protocol!r}): use 'native' or 'text'")
    spec = memory_spec(memory, "react_agent")
    registry = registry_of(tools)
    native = protocol == "native"
    if native:
        system_prompt = system
    else:
        system_prompt = (
            _TEXT_SYSTEM.format(tools=describe_tools(registry))
            if len(registry)
            else _TEXT_SYSTEM_NO_TOOLS
        )
        if system:
            system_prompt = f"{system}\n\n{system_prompt}"

    async def reason(state: ReActState, ctx: NodeContext) -> dict[str, Any]:
        """Ask the model for its next step."""
        history = _conversation(state)
        new: list[Message] = [] if history else [user(state.task)]
        system_now = system_prompt
        if spec is not None:
            system_now = with_memories(system_prompt, await recall(ctx, spec, state.task))
        extra: dict[str, Any] = {"cache": cache} if cache != "off" else {}
        if not native:
            extra["stop_sequences"] = [STOP_SEQUENCE]
        reply, made = await complete_turn(
            JournaledLLM(llm, ctx),
            [*history, *new],
            system=system_now,
            tools=(registry.specs or None) if native else None,
            max_tokens=max_tokens,
            max_continuations=max_continuations,
            **extra,
        )
        turn = state.turns + 1
        if reply.truncated:
            update = _read_truncated(reply, truncation_reason(reply, max_tokens, made))
        else:
            update = _read_native(reply) if native else _read_text(reply)
        steps = update.get("steps") or update.get("pending")
        if steps:
            steps[0].stop_reason = reply.stop_reason
        update["messages"] = new + update["messages"]
        update["turns"] = turn
        answer = update.get("answer")
        if spec is not None and isinstance(answer, str):
            remember(ctx, spec, note(state.task, "Answer", answer), source="answer", importance=0.8)
        return update

    async def act(state: ReActState, ctx: NodeContext) -> dict[str, Any]:
        """Run the tool calls of the last turn and record what they returned."""
        runner = JournaledTools(registry, ctx)
        calls: list[ToolCall | None] = []
        early: dict[int, Observation] = {}
        for i, step in enumerate(state.pending):
            action = step.action
            assert isinstance(action, ToolAction)
            found = registry.get(action.tool)
            if found is None:
                available = ", ".join(registry.names) or "none"
                early[i] = Observation(
                    content=f"UnknownTool: there is no tool named {action.tool!r}; available "
                    f"tools: {available}",
                    success=False,
                )
                calls.append(None)
                continue
            arguments = _arguments(found, action.input)
            if isinstance(arguments, str):
                early[i] = Observation(content=arguments, success=False)
                calls.append(None)
                continue
            call_id = action.id or f"react_{state.turns}_{i}"
            calls.append(ToolCall(id=call_id, name=action.tool, input=arguments))
        outcomes: list[ToolOutcome] = await runner.run_calls([c for c in calls if c is not None])
        done = iter(outcomes)
        steps: list[ReActStep] = []
        for i, step in enumerate(state.pending):
            if i in early:
                observation = early[i]
            else:
                outcome = next(done)
                observation = Observation(content=outcome.content, success=not outcome.is_error)
            steps.append(step.model_copy(update={"observation": observation}))
            if spec is not None and i not in early:
                remember(
                    ctx,
                    spec,
                    note(state.task, _observed(step.action), observation.content),
                    source="observation",
                    importance=0.5 if observation.success else 0.3,
                    tool=step.action.tool if isinstance(step.action, ToolAction) else None,
                    success=observation.success,
                )
        if native:
            reply = user(
                [
                    tool_result(
                        str(s.action.id) if isinstance(s.action, ToolAction) else "",
                        s.observation.content if s.observation else "",
                        is_error=not (s.observation and s.observation.success),
                    )
                    for s in steps
                ]
            )
        else:
            observation = steps[0].observation
            assert observation is not None
            label = "Observation" if observation.success else "Observation (error)"
            reply = user(f"{label}: {clip(observation.content, 8000) or '(empty)'}")
        return {"steps": steps, "messages": [reply], "pending": []}

    async def finish(state: ReActState) -> dict[str, Any]:
        """Close the run: set the status, and record tool calls the step limit left unrun."""
        update: dict[str, Any] = {}
        if state.status in ("failed", "truncated"):
            update["status"] = state.status
        elif state.answer is not None:
            update["status"] = "answered"
        else:
            update["status"] = "max_steps"
            update["error"] = (
                f"no final answer after {state.turns} model calls (max_steps={max_steps})"
            )
        if state.pending:
            update["steps"] = list(state.pending)
            update["pending"] = []
            if native:
                update["messages"] = [
                    user(
                        [
                            tool_result(str(s.action.id), NOT_RUN, is_error=True)
                            for s in state.pending
                            if isinstance(s.action, ToolAction)
                        ]
                    )
                ]
        return update

    def after_reason(state: ReActState) -> Literal["act", "reason", "finish"]:
        if state.answer is not None or state.status != "running":
            return "finish"
        if state.turns >= max_steps:
            return "finish"
        return "act" if state.pending else "reason"

    def after_act(state: ReActState) -> Literal["reason", "finish"]:
        return "reason" if state.turns < max_steps else "finish"

    g = GraphBuilder(ReActState, name=name)
    g.add_node("reason", reason, retry=retry, max_visits=max_steps)
    g.add_node("act", act)
    g.add_node("finish", finish)
    g.add_edge(START, "reason")
    g.add_conditional_edges("reason", after_reason)
    g.add_conditional_edges("act", after_act)
    g.add_edge("finish", END)
    return g


def _conversation(state: ReActState) -> list[Message]:
    """The conversation so far, read without the per-activation copy the engine makes of a
    field a node reads (`flowstate.engine._isolation`), which would cost a JSON round trip
    of the whole conversation every turn. `reason` only reads it: the model gets its own
    copy of the request, validated from the JSON that is journaled (`JournaledLLM`), so
    nothing can change the state's messages in place."""
    return state.__dict__["messages"]


def _read_native(reply: LLMResponse) -> dict[str, Any]:
    """The state update for a native tool-use reply."""
    text = reply.text.strip()
    if reply.stop_reason in ("refusal", "model_context_window_exceeded"):
        return {
            "messages": [reply.to_message()] if reply.content and reply.text else [],
            "steps": [ReActStep(thought=text)],
            "status": "failed",
            "error": f"the model stopped with stop_reason={reply.stop_reason!r}"
            + (f": {clip(text, 500)}" if text else ""),
        }
    if reply.tool_calls:
        pending = [
            ReActStep(
                thought=text if i == 0 else "",
                action=ToolAction(tool=c.name, input=c.input, id=c.id),
            )
            for i, c in enumerate(reply.tool_calls)
        ]
        return {"messages": [_clean_message(reply)], "pending": pending}
    if text:
        return {
            "messages": [reply.to_message()],
            "steps": [ReActStep(action=FinalAnswer(answer=text))],
            "answer": text,
        }
    return {
        "messages": [assistant(EMPTY_REPLY), user(_NATIVE_EMPTY)],
        "steps": [
            ReActStep(observation=Observation(content=_NATIVE_EMPTY, success=False)),
        ],
    }


def _read_truncated(reply: LLMResponse, reason: str) -> dict[str, Any]:
    """The state update for a turn still cut off at max_tokens: the run ends `truncated`.

    Only the text goes into the transcript: a cut-off tool call is never stored or run.
    """
    text = reply.text.strip()
    kept = [b for b in reply.to_message().blocks if b.type in ("thinking", "redacted_thinking")]
    said = assistant([*kept, TextBlock(text=text or "(cut off at max_tokens)")])
    return {
        "messages": [said],
        "steps": [ReActStep(thought=text)],
        "status": "truncated",
        "error": reason,
    }


def _observed(action: ReActAction | None) -> str:
    """How a remembered observation is introduced: the tool call it came from."""
    if not isinstance(action, ToolAction):
        return "Observation"
    given = action.input
    if not isinstance(given, str):
        given = json.dumps(given, ensure_ascii=False, default=str)
    return f"Observation from {action.tool}({clip(given, 300)})"


def _clean_message(reply: LLMResponse) -> Message:
    """The reply as an assistant message, without empty text blocks (which the API refuses)."""
    return reply.to_message()  # without blank text blocks; thinking blocks kept unchanged


def _read_text(reply: LLMResponse) -> dict[str, Any]:
    """The state update for a text-protocol reply."""
    parsed = parse_react(reply.text)
    said = assistant(parsed.text or reply.text.strip() or EMPTY_REPLY)
    if parsed.final_answer is not None:
        return {
            "messages": [said],
            "steps": [
                ReActStep(thought=parsed.thought, action=FinalAnswer(answer=parsed.final_answer))
            ],
            "answer": parsed.final_answer,
        }
    if parsed.tool is not None:
        action = ToolAction(tool=parsed.tool, input=parsed.tool_input or {})
        return {"messages": [said], "pending": [ReActStep(thought=parsed.thought, action=action)]}
    correction = _CORRECTION.format(error=parsed.error or "it could not be read")
    return {
        "messages": [said, user(correction)],
        "steps": [
            ReActStep(
                thought=parsed.thought,
                observation=Observation(content=correction, success=False),
            )
        ],
    }


def _arguments(found: Tool[..., Any], given: dict[str, Any] | str) -> dict[str, Any] | str:
    """The tool's arguments as a JSON object, or an error message for the model.

    A plain string is accepted for a tool with one parameter (or one required parameter).
    """
    if isinstance(given, dict):
        return given
    schema = found.input_schema
    params = list(schema.get("properties", {}))
    required = list(schema.get("required", []))
    if len(params) == 1:
        return {params[0]: given}
    if len(required) == 1:
        return {required[0]: given}
    if not params:
        return {}
    listed = ", ".join(params)
    return (
        f"ToolInputError: tool {found.name!r} takes several arguments ({listed}); give them "
        f'as a JSON object, e.g. Action: {found.name}({{"{params[0]}": ...}})'
    )
