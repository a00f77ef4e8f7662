"""W8 agent loop: a prebuilt ReAct agent for N turns, one tool call per turn, SQLite checkpoints.

Both engines run their prebuilt tool-calling agent with a scripted model that answers
instantly, so what is measured is the agent framework: building each model request,
journaling/checkpointing, running the tool, growing the message history.

- Turn k (1 ≤ k ≤ N): the model answers with one tool call `lookup(k=k)` (and a short text);
  the tool returns `"value <k>"`. Turn N + 1: the model answers with text only (the final
  answer). So a run makes N + 1 model calls and N tool calls, and the conversation ends with
  2N + 2 messages (the task, N × (tool call, tool result), the answer).
- flowstate: `flowstate.graphs.react_agent(llm, [lookup], max_steps=N + 1)` compiled with
  `store=<file>` (SQLite, its defaults: a commit per activation — `reason` and `act` each
  turn, then `finish`; every model call and tool call is a journaled effect recorded with
  the activation). The model is `flowstate.llm.ScriptedLLM` with a script function (the
  library's offline model: it records each request and checks the conversation the way the
  Anthropic API would).
- LangGraph: `langchain.agents.create_agent(model, [lookup], checkpointer=AsyncSqliteSaver)`
  (the current prebuilt agent; `langgraph.prebuilt.create_react_agent` where langchain has no
  `create_agent`), `ainvoke` with its default durability (a checkpoint per superstep:
  `model` and `tools` each turn). The model is `ScriptedChat` below: a `BaseChatModel` whose
  `bind_tools` returns itself and whose `_agenerate` answers from the same script (the stock
  fake chat models lack `bind_tools`).

Timed: one whole run (`await app.run(...)` / `await agent.ainvoke(...)`) from the task to the
final answer, on a fresh run/thread id, after one untimed warm-up run on the same compiled
agent and database; the mean of `INNER` timed runs. Reported: per-turn overhead = run time /
N (µs), and — to show both did the same work — the model calls, tool calls and checkpoints
of the last run (flowstate: committed activations; LangGraph: checkpoints of the thread).
"""

from __future__ import annotations

from typing import Any

from _common import FULL, Clock, Sizes, scratch

INNER = 2
"""Timed runs per measurement (after one untimed warm-up run); the mean is reported."""

TASK = "Look up the values one by one, then report."


def _final(turns: int) -> str:
    return f"Done: looked up {turns} values."


# -- flowstate ------------------------------------------------------------------------------


def _fs_agent(turns: int) -> tuple[Any, Any]:
    from flowstate.graphs import react_agent
    from flowstate.llm import LLMRequest, ScriptedLLM, tool

    @tool
    async def lookup(k: int) -> str:
        """Look up value number k."""
        return f"value {k}"

    def script(req: LLMRequest) -> Any:
        done = (len(req.messages) - 1) // 2  # the task, then (tool call, result) per turn
        if done < turns:
            k = done + 1
            return {
                "text": f"Looking up {k}.",
                "tool_calls": [{"name": "lookup", "input": {"k": k}, "id": f"call_{k}"}],
            }
        return _final(turns)

    llm = ScriptedLLM(script)
    return react_agent(llm, [lookup], max_steps=turns + 1, name="w8_react"), llm


async def flowstate(cfg: Sizes = FULL) -> dict[str, Any]:
    turns = cfg.w8_turns
    builder, llm = _fs_agent(turns)
    with scratch("w8-fs") as d:
        app = builder.compile(store=str(d / "fs.db"))
        r = await app.run({"task": TASK})  # warm-up
        assert r.state.answer == _final(turns), r.state
        total = 0.0
        for _ in range(INNER):
            # the scripted model keeps every request it got (for tests): dropped before
            # each timed run, or the growing heap of old conversations makes the
            # collector's full passes (tens of ms each) part of flowstate's time
            llm.requests.clear()
            with Clock() as c:
                r = await app.run({"task": TASK})
            total += c.s
            state = r.state
            assert r.status == "completed" and state.answer == _final(turns), state
        model_calls = len(llm.requests)
        tool_calls = sum(1 for s in state.steps if s.observation is not None)
        assert model_calls == turns + 1 and tool_calls == turns, (model_calls, tool_calls)
        assert len(state.messages) == 2 * turns + 2
        checkpoints = len(app.history(r.run_id))
        app.store.close()
    return {
        "us_per_turn": total / INNER / turns * 1e6,
        "model_calls": model_calls,
        "tool_calls": tool_calls,
        "checkpoints": checkpoints,
    }


# -- LangGraph -------------------------------------------------------------------------------


def _lg_model(turns: int) -> Any:
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, ToolMessage
    from langchain_core.outputs import ChatGeneration, ChatResult

    class ScriptedChat(BaseChatModel):
        """A scripted chat model: a tool call per turn, then the final answer."""

        calls: int = 0

        @property
        def _llm_type(self) -> str:
            return "w8-scripted"

        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return self

        def _answer(self, messages: list[Any]) -> ChatResult:
            self.calls += 1
            done = sum(1 for m in messages if isinstance(m, ToolMessage))
            if done < turns:
                k = done + 1
                msg = AIMessage(
                    content=f"Looking up {k}.",
                    tool_calls=[{"name": "lookup", "args": {"k": k}, "id": f"call_{k}"}],
                )
            else:
                msg = AIMessage(content=_final(turns))
            return ChatResult(generations=[ChatGeneration(message=msg)])

        def _generate(self, messages: list[Any], stop: Any = None, **kw: Any) -> ChatResult:
            return self._answer(messages)

        async def _agenerate(self, messages: list[Any], stop: Any = None, **kw: Any) -> ChatResult:
            return self._answer(messages)

    return ScriptedChat()


def _lg_agent(model: Any, tools: list[Any], saver: Any) -> Any:
    try:
        from langchain.agents import create_agent
    except ImportError:  # an older langchain: the langgraph prebuilt agent
        from langgraph.prebuilt import create_react_agent

        return create_react_agent(model, tools, checkpointer=saver)
    return create_agent(model, tools, checkpointer=saver)


async def langgraph(cfg: Sizes = FULL) -> dict[str, Any]:
    from langchain_core.messages import ToolMessage
    from langchain_core.tools import tool
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    turns = cfg.w8_turns

    @tool
    async def lookup(k: int) -> str:
        """Look up value number k."""
        return f"value {k}"

    model = _lg_model(turns)
    k = 0

    def config() -> dict[str, Any]:
        nonlocal k
        k += 1
        return {"configurable": {"thread_id": f"w8-{k}"}, "recursion_limit": 4 * turns + 10}

    with scratch("w8-lg") as d:
        async with AsyncSqliteSaver.from_conn_string(str(d / "lg.db")) as saver:
            agent = _lg_agent(model, [lookup], saver)
            r = await agent.ainvoke({"messages": [("user", TASK)]}, config())  # warm-up
            assert r["messages"][-1].content == _final(turns), r["messages"][-1]
            total = 0.0
            for _ in range(INNER):
                before = model.calls
                cfg_run = config()
                with Clock() as c:
                    r = await agent.ainvoke({"messages": [("user", TASK)]}, cfg_run)
                total += c.s
                assert r["messages"][-1].content == _final(turns), r["messages"][-1]
            model_calls = model.calls - before
            tool_calls = sum(1 for m in r["messages"] if isinstance(m, ToolMessage))
            assert model_calls == turns + 1 and tool_calls == turns, (model_calls, tool_calls)
            assert len(r["messages"]) == 2 * turns + 2
            checkpoints = len([c async for c in saver.alist(cfg_run)])
    return {
        "us_per_turn": total / INNER / turns * 1e6,
        "model_calls": model_calls,
        "tool_calls": tool_calls,
        "checkpoints": checkpoints,
    }
