"""Provider-neutral message, request and response models.

Every model here is plain pydantic data that round-trips through JSON unchanged
(`Model.model_validate_json(m.model_dump_json()) == m`), because the engine journals LLM
requests and responses and replays them offline. The shapes follow the Anthropic Messages
API (content blocks, `tool_use` / `tool_result`), which is also what `ScriptedLLM` speaks.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "CacheMode",
    "ContentBlock",
    "LLMRequest",
    "LLMResponse",
    "Message",
    "RedactedThinkingBlock",
    "Role",
    "TextBlock",
    "ThinkingBlock",
    "ToolCall",
    "ToolChoice",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "Usage",
    "assistant",
    "clean_conversation",
    "conversation_problems",
    "tool_result",
    "user",
]

_STRICT = ConfigDict(extra="forbid")

Role = Literal["user", "assistant"]
"""Who wrote a message: `"user"` (the human, or tool results going back to the model) or
`"assistant"` (the model)."""


class TextBlock(BaseModel):
    """A span of plain text in a message."""

    model_config = _STRICT

    type: Literal["text"] = "text"
    """Discriminator; always `"text"`."""
    text: str
    """The text itself."""


class ToolUseBlock(BaseModel):
    """The model asking for a tool to be called (appears in assistant messages)."""

    model_config = _STRICT

    type: Literal["tool_use"] = "tool_use"
    """Discriminator; always `"tool_use"`."""
    id: str
    """Call id chosen by the model; the matching `ToolResultBlock.tool_use_id` must repeat it."""
    name: str
    """Name of the tool to call."""
    input: dict[str, Any]
    """Arguments for the tool, as a JSON object."""


class ToolResultBlock(BaseModel):
    """The result of one tool call, sent back to the model in a user message."""

    model_config = _STRICT

    type: Literal["tool_result"] = "tool_result"
    """Discriminator; always `"tool_result"`."""
    tool_use_id: str
    """The `ToolUseBlock.id` this result answers."""
    content: str
    """The tool's output (JSON-encoded unless the tool returned a string) or error text."""
    is_error: bool = False
    """True when the tool failed or its input was invalid; `content` then explains why."""


class ThinkingBlock(BaseModel):
    """The model's visible reasoning before its answer (extended thinking).

    Never part of the answer (`LLMResponse.text` skips it). In a tool-use loop it must go back
    to the API exactly as received, `signature` included, or the API refuses the request.
    """

    model_config = _STRICT

    type: Literal["thinking"] = "thinking"
    """Discriminator; always `"thinking"`."""
    thinking: str
    """The reasoning text."""
    signature: str
    """The provider's signature over the block; sent back unchanged."""


class RedactedThinkingBlock(BaseModel):
    """Reasoning the provider encrypted (extended thinking); sent back unchanged, never shown."""

    model_config = _STRICT

    type: Literal["redacted_thinking"] = "redacted_thinking"
    """Discriminator; always `"redacted_thinking"`."""
    data: str
    """The opaque, encrypted reasoning."""


ContentBlock = Annotated[
    TextBlock | ToolUseBlock | ToolResultBlock | ThinkingBlock | RedactedThinkingBlock,
    Field(discriminator="type"),
]
"""One block of message content, discriminated on `type`."""

_THINKING = (ThinkingBlock, RedactedThinkingBlock)


class Message(BaseModel):
    """One turn of a conversation."""

    model_config = _STRICT

    role: Role
    """Who wrote the message."""
    content: str | list[ContentBlock]
    """A plain string (shorthand for one text block) or a list of content blocks."""

    @property
    def blocks(self) -> list[ContentBlock]:
        """The content as a list of blocks (a string becomes one `TextBlock`)."""
        if isinstance(self.content, str):
            return [TextBlock(text=self.content)]
        return list(self.content)

    @property
    def text(self) -> str:
        """The concatenated text of the message's text blocks (tool blocks are skipped)."""
        return "".join(b.text for b in self.blocks if isinstance(b, TextBlock))


class ToolCall(BaseModel):
    """A tool call requested by the model, ready to execute."""

    model_config = _STRICT

    id: str
    """Call id; send the result back with `tool_use_id` equal to it."""
    name: str
    """Name of the tool to call."""
    input: dict[str, Any] = Field(default_factory=dict)
    """Arguments for the tool, as a JSON object (not yet validated against its schema)."""

    def to_block(self) -> ToolUseBlock:
        """This call as the `tool_use` content block of an assistant message."""
        return ToolUseBlock(id=self.id, name=self.name, input=self.input)


class Usage(BaseModel):
    """Token counts reported for one model call."""

    model_config = _STRICT

    input_tokens: int = 0
    """Tokens in the prompt (messages, system prompt and tool definitions)."""
    output_tokens: int = 0
    """Tokens the model generated (thinking included)."""
    cache_creation_input_tokens: int = 0
    """Prompt tokens written to the prompt cache by this call (billed above `input_tokens`'
    rate); not included in `input_tokens`."""
    cache_read_input_tokens: int = 0
    """Prompt tokens served from the prompt cache (billed at a fraction of the input rate);
    not included in `input_tokens`."""

    def counts(self) -> dict[str, int]:
        """The non-zero counts as a plain dict (what a node's activation records)."""
        return {k: v for k, v in self.model_dump().items() if v}


class ToolChoice(BaseModel):
    """How the model must use the tools offered (the Messages API's `tool_choice`)."""

    model_config = _STRICT

    type: Literal["auto", "any", "tool", "none"] = "auto"
    """`auto`: the model decides; `any`: it must call some tool; `tool`: it must call the tool
    `name`; `none`: it must not call tools."""
    name: str | None = None
    """The tool to call, for `type="tool"` only."""

    @model_validator(mode="after")
    def _name_matches_type(self) -> ToolChoice:
        if (self.type == "tool") != (self.name is not None):
            raise ValueError(
                "ToolChoice needs name= exactly when type='tool', e.g. "
                "ToolChoice(type='tool', name='Answer')"
            )
        return self

    @property
    def forced(self) -> bool:
        """True when the model is made to call a tool (`any` or `tool`)."""
        return self.type in ("any", "tool")


CacheMode = Literal["off", "auto"]
"""Prompt caching of a request: `"off"`, or `"auto"` (breakpoints on the system prompt, the
tools and the stable prefix of the conversation; at most 4, the API's limit)."""


class ToolSpec(BaseModel):
    """A tool definition as the model sees it."""

    model_config = _STRICT

    name: str
    """Tool name the model uses to call it (letters, digits, `_` and `-`)."""
    description: str = ""
    """What the tool does and when to use it; the model relies on this to choose tools."""
    input_schema: dict[str, Any]
    """JSON Schema of the tool's arguments; the top level must be `{"type": "object", …}`."""


class LLMRequest(BaseModel):
    """Everything one `LLM.complete` call was asked; recorded by `ScriptedLLM.requests`."""

    model_config = _STRICT

    messages: list[Message]
    """The conversation so far, oldest first."""
    system: str | None = None
    """System prompt, if any."""
    tools: list[ToolSpec] = Field(default_factory=list)
    """Tools the model may call."""
    max_tokens: int = 1024
    """Upper bound on generated tokens."""
    temperature: float | None = None
    """Sampling temperature; None leaves the provider default."""
    model: str | None = None
    """Model name the request was addressed to, when the LLM has one."""
    tool_choice: ToolChoice | None = None
    """How the model must use the tools; None is the provider default (auto)."""
    stop_sequences: list[str] = Field(default_factory=list)
    """Strings that end generation when the model writes them (`stop_reason` `stop_sequence`)."""
    cache: CacheMode = "off"
    """Prompt caching breakpoints (see `CacheMode`)."""
    thinking: int | Literal["adaptive"] | None = None
    """Extended thinking of the model the request went to: a token budget, `"adaptive"`, or
    None (off). Recorded so a journaled request says how it was asked."""

    # Fields added after the first journal format; left out of the journaled JSON while they
    # hold their defaults, so requests recorded before they existed still match on resume.
    _LATE_FIELDS: ClassVar[tuple[str, ...]] = ("tool_choice", "stop_sequences", "cache", "thinking")

    def journal_json(self) -> dict[str, Any]:
        """The request as the JSON journaled for it (late fields only when set)."""
        data = self.model_dump(mode="json")
        for name in self._LATE_FIELDS:
            if data.get(name) in (None, [], "off"):
                data.pop(name, None)
        return data

    @property
    def last_user_text(self) -> str:
        """Text of the most recent user message (tool results are summarised), or `""`."""
        for message in reversed(self.messages):
            if message.role == "user":
                return _describe(message)
        return ""


class LLMResponse(BaseModel):
    """A model's answer.

    `content` is the canonical, ordered list of blocks; `text` and `tool_calls` are views of it
    kept for convenience. Give either `content`, or `text` and/or `tool_calls` (the other side
    is derived); if you give both they must agree.
    """

    model_config = _STRICT

    text: str = ""
    """Concatenated text of all text blocks."""
    tool_calls: list[ToolCall] = Field(default_factory=list)
    """Tool calls the model asked for, in order; empty when it answered directly."""
    stop_reason: str | None = None
    """Why generation stopped, using the Anthropic names: `end_turn` (finished), `tool_use`
    (wants tool results), `max_tokens` (hit the limit), `stop_sequence`, `pause_turn`,
    `refusal`, `model_context_window_exceeded`; None if the provider gave none."""
    usage: Usage = Field(default_factory=Usage)
    """Token counts for this call."""
    model: str | None = None
    """Model that produced the answer, as reported by the provider."""
    content: list[ContentBlock] = Field(default_factory=list)
    """The answer's content blocks in order (thinking, text and `tool_use`)."""

    @model_validator(mode="after")
    def _sync_views(self) -> LLMResponse:
        if any(isinstance(b, ToolResultBlock) for b in self.content):
            raise ValueError(
                "LLMResponse.content holds a tool_result block, but tool results belong in a "
                "user message: build them with tool_result(...) and send them with user([...])"
            )
        derived_text = "".join(b.text for b in self.content if isinstance(b, TextBlock))
        derived_calls = [
            ToolCall(id=b.id, name=b.name, input=b.input)
            for b in self.content
            if isinstance(b, ToolUseBlock)
        ]
        if not self.content:
            blocks: list[ContentBlock] = [TextBlock(text=self.text)] if self.text else []
            blocks.extend(call.to_block() for call in self.tool_calls)
            self.content = blocks
        elif not self.text and not self.tool_calls:
            self.text = derived_text
            self.tool_calls = derived_calls
        elif self.text != derived_text or self.tool_calls != derived_calls:
            raise ValueError(
                "LLMResponse was given `content` and also `text`/`tool_calls` that disagree with "
                f"it (text {self.text!r} vs {derived_text!r} from content; "
                f"{len(self.tool_calls)} tool_calls vs {len(derived_calls)} tool_use blocks): "
                "pass only `content`, or only `text` and `tool_calls`"
            )
        return self

    @property
    def thinking(self) -> str:
        """The model's visible reasoning (thinking blocks), never part of `text`."""
        return "".join(b.thinking for b in self.content if isinstance(b, ThinkingBlock))

    @property
    def truncated(self) -> bool:
        """True when generation hit `max_tokens`: the text is cut off, and a trailing
        `tool_use` block may hold incomplete input (never run it)."""
        return self.stop_reason == "max_tokens"

    def to_message(self) -> Message:
        """The assistant `Message` to append to the conversation before sending tool results.

        Thinking blocks stay in it, unchanged: the API needs them back in a tool-use loop.
        Empty or whitespace-only text blocks are left out (the API refuses them).
        """
        return Message(
            role="assistant",
            content=[b.model_copy(deep=True) for b in self.content if not _blank(b)],
        )


def user(content: str | Sequence[ContentBlock]) -> Message:
    """A user message: a string, or blocks such as `[tool_result(...), ...]`."""
    return Message(role="user", content=content if isinstance(content, str) else list(content))


def assistant(content: str | Sequence[ContentBlock]) -> Message:
    """An assistant message: a string or content blocks."""
    return Message(role="assistant", content=content if isinstance(content, str) else list(content))


def tool_result(tool_use_id: str, content: str, *, is_error: bool = False) -> ToolResultBlock:
    """A `tool_result` block answering the tool call `tool_use_id`; send it inside `user([...])`."""
    return ToolResultBlock(tool_use_id=tool_use_id, content=content, is_error=is_error)


def _blank(block: ContentBlock) -> bool:
    """A text block the API refuses: empty or whitespace only."""
    return isinstance(block, TextBlock) and not block.text.strip()


def conversation_problems(messages: Sequence[Message]) -> list[str]:
    """Every rule of the Anthropic Messages API that this conversation breaks (empty if none).

    The rules: the first message is a user one; roles alternate; no message is empty; no text
    block is empty or whitespace only; a final assistant message (a prefill) does not end
    with whitespace; tool_use blocks only in assistant messages, with unique ids, each
    answered by exactly one tool_result in the very next user message, where the
    tool_result blocks come first; a tool_result only answers a tool_use of the message just
    before; thinking blocks only in assistant messages. `clean_conversation` fixes what can be
    fixed without losing anything.
    """
    problems: list[str] = []
    if not messages:
        return ["the conversation is empty; start it with user(...)"]
    if messages[0].role != "user":
        problems.append("messages[0] has role 'assistant'; the first message must be a user one")
    for i, (prev, cur) in enumerate(itertools.pairwise(messages), 1):
        if prev.role == cur.role:
            problems.append(
                f"messages[{i - 1}] and messages[{i}] both have role {cur.role!r}; roles must "
                "alternate (merge them into one message)"
            )
    # each message's blocks once (a string is one text block), and the tool_use ids each
    # assistant message asks for: every check below is one pass over the conversation
    all_blocks = [_blocks_of(m) for m in messages]
    asked_of = [
        [b.id for b in blocks if isinstance(b, ToolUseBlock)] if m.role == "assistant" else []
        for m, blocks in zip(messages, all_blocks, strict=True)
    ]
    last = len(messages) - 1
    for i, message in enumerate(messages):
        blocks = all_blocks[i]
        final_assistant = message.role == "assistant" and i == last
        if not message.content:
            if not final_assistant:
                problems.append(f"messages[{i}] is empty; only a final assistant message may be")
        else:
            for j, block in enumerate(blocks):
                if _blank(block):
                    problems.append(
                        f"messages[{i}] block {j} is a text block that is empty or only "
                        "whitespace; the API refuses it (drop the block)"
                    )
        if final_assistant and blocks and isinstance(blocks[-1], TextBlock):
            tail = blocks[-1].text
            if tail.strip() and tail != tail.rstrip():
                problems.append(
                    f"messages[{i}] is a final assistant message (a prefill) ending with "
                    "whitespace; the API refuses it (strip the trailing whitespace)"
                )
        if message.role == "assistant":
            asked = asked_of[i]
            if any(isinstance(b, ToolResultBlock) for b in blocks):
                problems.append(f"messages[{i}] is an assistant message with a tool_result block")
            if asked and i < last:
                answered = {
                    b.tool_use_id for b in all_blocks[i + 1] if isinstance(b, ToolResultBlock)
                }
                missing = [a for a in asked if a not in answered]
                if missing:
                    problems.append(
                        f"tool_use ids {missing} in messages[{i}] have no tool_result in "
                        f"messages[{i + 1}]; answer every tool call before continuing"
                    )
            continue
        asked_before = set(asked_of[i - 1]) if i > 0 else set()
        answered_here: set[str] = set()
        after_other = False
        for block in blocks:
            if isinstance(block, ToolUseBlock):
                problems.append(f"messages[{i}] is a user message with a tool_use block")
            elif isinstance(block, _THINKING):
                problems.append(f"messages[{i}] is a user message with a {block.type} block")
            elif isinstance(block, ToolResultBlock):
                if after_other:
                    problems.append(
                        f"messages[{i}] has a tool_result after other content; tool_result "
                        "blocks must come first in the user message"
                    )
                    after_other = False  # report once per run of misplaced blocks
                if block.tool_use_id not in asked_before:
                    problems.append(
                        f"messages[{i}] has a tool_result for {block.tool_use_id!r}, which the "
                        "previous assistant message did not ask for"
                    )
                elif block.tool_use_id in answered_here:
                    problems.append(
                        f"messages[{i}] answers tool_use {block.tool_use_id!r} twice; send one "
                        "tool_result per call"
                    )
                answered_here.add(block.tool_use_id)
            else:
                after_other = True
    return problems


def _blocks_of(message: Message) -> list[ContentBlock]:
    """`message.blocks` without the copy of a block list (read only)."""
    content = message.content
    return [TextBlock(text=content)] if isinstance(content, str) else content


def clean_conversation(messages: Sequence[Message]) -> list[Message]:
    """The conversation with what the Messages API refuses fixed, losing nothing it accepts.

    Every model backend sends the cleaned conversation, so a stored conversation with, say, a
    whitespace-only text block before a `tool_use` (which models do write) never earns a 400
    — not on the first call, and not on a resume that sends it again. In order:

    1. empty and whitespace-only text blocks are dropped (thinking blocks are never touched);
       a message left empty is dropped;
    2. neighbouring messages of the same role are merged into one;
    3. in a user message, tool_result blocks are moved before the other blocks;
    4. a tool call with no tool_result in the next user message gets one (`is_error`, saying
       no result was recorded), and a tool_result that answers no call of the message before
       (or answers one twice) becomes a text block with the same content;
    5. a final assistant message (a prefill) loses its trailing whitespace.

    What cannot be fixed (a conversation that starts with the model) is left for
    `conversation_problems` to report. The input is not modified. A conversation that needs
    no fix (the usual case: an agent's own transcript) comes back as a new list of the same
    `Message` objects, without copying them.
    """
    return clean_and_check(messages)[0]


def clean_and_check(messages: Sequence[Message]) -> tuple[list[Message], list[str]]:
    """`clean_conversation(messages)` and the `conversation_problems` of the result, in one
    pass over the conversation when it needs no fix."""
    if all(m.content for m in messages):
        problems = conversation_problems(messages)
        if not problems:  # nothing to drop, merge, reorder, answer or strip: as it is
            return list(messages), []
    cleaned = _clean(messages)
    return cleaned, conversation_problems(cleaned)


def _clean(messages: Sequence[Message]) -> list[Message]:
    kept: list[Message] = []
    for message in messages:
        blocks = [b.model_copy(deep=True) for b in message.blocks if not _blank(b)]
        if not blocks:
            continue
        if kept and kept[-1].role == message.role:
            kept[-1] = Message(role=message.role, content=[*kept[-1].blocks, *blocks])
        elif isinstance(message.content, str):
            kept.append(Message(role=message.role, content=message.content))
        else:
            kept.append(Message(role=message.role, content=blocks))
    out: list[Message] = []
    for message in kept:
        prev = out[-1] if out else None
        asked = (
            [b.id for b in prev.blocks if isinstance(b, ToolUseBlock)]
            if prev is not None and message.role == "user"
            else []
        )
        if message.role == "user" and (asked or not isinstance(message.content, str)):
            message = _answer_calls(message, asked)
        out.append(message)
    if out and out[-1].role == "assistant":
        last = out[-1]
        blocks = last.blocks
        if isinstance(blocks[-1], TextBlock) and blocks[-1].text != blocks[-1].text.rstrip():
            if isinstance(last.content, str):
                out[-1] = Message(role="assistant", content=last.content.rstrip())
            else:
                tail = TextBlock(text=blocks[-1].text.rstrip())
                out[-1] = Message(role="assistant", content=[*blocks[:-1], tail])
    return out


def _answer_calls(message: Message, asked: list[str]) -> Message:
    """A user message whose tool_results come first and answer each call in `asked` once."""
    results: list[ContentBlock] = []
    others: list[ContentBlock] = []
    answered: set[str] = set()
    for block in message.blocks:
        if not isinstance(block, ToolResultBlock):
            others.append(block)
        elif block.tool_use_id in asked and block.tool_use_id not in answered:
            answered.add(block.tool_use_id)
            results.append(block)
        else:
            flag = " (error)" if block.is_error else ""
            others.append(
                TextBlock(
                    text=f"[result{flag} of tool call {block.tool_use_id}]: "
                    f"{block.content or '(empty)'}"
                )
            )
    results.extend(
        ToolResultBlock(tool_use_id=a, content=NO_RESULT, is_error=True)
        for a in dict.fromkeys(asked)
        if a not in answered
    )
    blocks = [*results, *others]
    if blocks == message.blocks:
        return message
    return Message(role="user", content=blocks)


NO_RESULT = "no result was recorded for this tool call; it was not run"
"""Content of the tool_result `clean_conversation` adds for a tool call left unanswered."""


def _describe(message: Message) -> str:
    parts: list[str] = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, ToolResultBlock):
            flag = " (error)" if block.is_error else ""
            parts.append(f"[tool_result for {block.tool_use_id}{flag}: {block.content}]")
        elif isinstance(block, ToolUseBlock):
            parts.append(f"[tool_use {block.name} {block.input}]")
    return " ".join(parts)
