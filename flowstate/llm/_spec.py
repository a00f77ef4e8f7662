"""`llm_from_spec`: build an `LLM` from a command-line spec such as `anthropic:MODEL`."""

from __future__ import annotations

from ._anthropic import DEFAULT_ANTHROPIC_MODEL, AnthropicLLM
from ._errors import LLMConfigError
from ._protocol import LLM
from ._scripted import ScriptedLLM

__all__ = ["llm_from_spec"]

_SPEC_HELP = (
    f"use 'anthropic:MODEL' (e.g. anthropic:{DEFAULT_ANTHROPIC_MODEL}; needs ANTHROPIC_API_KEY) "
    "or 'scripted:FILE' (FILE is a JSON list of responses; runs offline)"
)


def llm_from_spec(spec: str) -> LLM:
    """Parse an `--llm` value: `anthropic[:MODEL]` or `scripted:FILE`."""
    kind, _, arg = spec.strip().partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()
    if kind == "anthropic":
        return AnthropicLLM(arg or DEFAULT_ANTHROPIC_MODEL)
    if kind == "scripted":
        if not arg:
            raise LLMConfigError(
                f"--llm {spec!r} names no script file; write it as scripted:FILE, e.g. "
                "scripted:examples/answers.json"
            )
        return ScriptedLLM.from_file(arg)
    raise LLMConfigError(f"unknown --llm spec {spec!r}: {_SPEC_HELP}")
