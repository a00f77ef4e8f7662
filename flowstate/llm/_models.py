"""Provider-neutral message, request and response models.

Every model here is plain pydantic data that round-trips through JSON unchanged
(`Model.model_validate_json(m.model_dump_json()) == m`), because the engine journals LLM
requests and responses and replays them offline. The shapes follow the Anthropic Messages
API (content blocks, `tool_use` / `tool_result`), which is also what `ScriptedLLM` speaks.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "ContentBlock",
    "LLMRequest",
    "LLMResponse",
    "Message",
    "Role",
    "TextBlock",
    "ToolCall",
    "ToolResultBlock",
    "ToolSpec",
    "ToolUseBlock",
    "Usage",
    "assistant",
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


ContentBlock = Annotated[TextBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]
"""One block of message content, discriminated on `type`."""


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
    """Tokens the model generated."""


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
    """The answer's content blocks in order (text and `tool_use`)."""

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

    def to_message(self) -> Message:
        """The assistant `Message` to append to the conversation before sending tool results."""
        return Message(role="assistant", content=[b.model_copy(deep=True) for b in self.content])


def user(content: str | Sequence[ContentBlock]) -> Message:
    """A user message: a string, or blocks such as `[tool_result(...), ...]`."""
    return Message(role="user", content=content if isinstance(content, str) else list(content))


def assistant(content: str | Sequence[ContentBlock]) -> Message:
    """An assistant message: a string or content blocks."""
    return Message(role="assistant", content=content if isinstance(content, str) else list(content))


def tool_result(tool_use_id: str, content: str, *, is_error: bool = False) -> ToolResultBlock:
    """A `tool_result` block answering the tool call `tool_use_id`; send it inside `user([...])`."""
    return ToolResultBlock(tool_use_id=tool_use_id, content=content, is_error=is_error)


def conversation_problems(messages: Sequence[Message]) -> list[str]:
    """What the Anthropic Messages API would reject in this conversation (empty if fine)."""
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
    for i, message in enumerate(messages):
        blocks = message.blocks
        final_assistant = message.role == "assistant" and i == len(messages) - 1
        if not final_assistant and (not message.content or message.content == [TextBlock(text="")]):
            problems.append(f"messages[{i}] is empty; only a final assistant message may be")
        if message.role == "assistant":
            asked = [b.id for b in blocks if isinstance(b, ToolUseBlock)]
            if any(isinstance(b, ToolResultBlock) for b in blocks):
                problems.append(f"messages[{i}] is an assistant message with a tool_result block")
            nxt = messages[i + 1] if i + 1 < len(messages) else None
            if asked and nxt is not None:
                answered = {b.tool_use_id for b in nxt.blocks if isinstance(b, ToolResultBlock)}
                missing = [a for a in asked if a not in answered]
                if missing:
                    problems.append(
                        f"tool_use ids {missing} in messages[{i}] have no tool_result in "
                        f"messages[{i + 1}]; answer every tool call before continuing"
                    )
        else:
            prev_msg = messages[i - 1] if i > 0 else None
            asked_before = (
                {b.id for b in prev_msg.blocks if isinstance(b, ToolUseBlock)}
                if prev_msg is not None
                else set()
            )
            for block in blocks:
                if isinstance(block, ToolUseBlock):
                    problems.append(f"messages[{i}] is a user message with a tool_use block")
                elif isinstance(block, ToolResultBlock) and block.tool_use_id not in asked_before:
                    problems.append(
                        f"messages[{i}] has a tool_result for {block.tool_use_id!r}, which the "
                        "previous assistant message did not ask for"
                    )
    return problems


def _describe(message: Message) -> str:
    parts: list[str] = []
    for block in message.blocks:
        if isinstance(block, TextBlock):
            parts.append(block.text)
        elif isinstance(block, ToolResultBlock):
            flag = " (error)" if block.is_error else ""
            parts.append(f"[tool_result for {block.tool_use_id}{flag}: {block.content}]")
        else:
            parts.append(f"[tool_use {block.name} {block.input}]")
    return " ".join(parts)
