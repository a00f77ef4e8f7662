"""Fixtures for the node kinds: the LLM layer's local Messages API server and `AnthropicLLM`
(`messages_server`, `server`, `anthropic_llm`, `anyio_backend`), reused from tests/llm."""

from tests.llm.conftest import *  # noqa: F403
