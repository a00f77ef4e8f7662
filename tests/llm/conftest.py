"""Fixtures for the LLM layer: a local Messages API server and an `AnthropicLLM` aimed at it.

- `messages_server` (session): the running `MessagesServer`; `base_url` is its address.
- `server` (per test): the same server, emptied before the test; fails the test if replies it
  queued were never requested.
- `anthropic_llm` (per test): a real `AnthropicLLM` (real SDK, real HTTP) using a dummy key.

Async tests run on asyncio through anyio's pytest plugin (`pytest.mark.anyio`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from flowstate.llm import AnthropicLLM

from .messages_server import MessagesServer

TEST_MODEL = "claude-test"
TEST_KEY = "test-key"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def messages_server() -> Iterator[MessagesServer]:
    with MessagesServer() as running:
        yield running


@pytest.fixture
def server(messages_server: MessagesServer) -> Iterator[MessagesServer]:
    messages_server.reset()
    yield messages_server
    left = messages_server.pending
    messages_server.reset()
    assert left == 0, f"{left} queued replies were never requested"


@pytest.fixture
async def anthropic_llm(server: MessagesServer) -> AsyncIterator[AnthropicLLM]:
    # Async so the client's connections close on the test's own event loop.
    async with AnthropicLLM(
        TEST_MODEL, api_key=TEST_KEY, base_url=server.base_url, max_retries=2, timeout=10.0
    ) as llm:
        yield llm
