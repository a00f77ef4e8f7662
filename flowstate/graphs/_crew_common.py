"""Pieces the crews share: the default prompts, the synthesiser, the first log entry."""

from typing import Any, TypedDict

from flowstate.engine import NodeContext
from flowstate.llm import JournaledLLM, user
from flowstate.nodes import complete_turn, truncation_reason

from ._common import MemorySpec, note, recall, remember, with_memories
from ._crew_agents import Agent, agent_from_llm
from ._crew_models import CrewMessage, CrewState, CrewStatus

__all__ = [
    "SYNTHESISER_SYSTEM",
    "FinishUpdate",
    "remember_answer",
    "resolve_synthesiser",
    "roster",
    "synthesise_answers",
    "task_message",
    "this_turn",
    "turn_log",
]

SYNTHESISER_SYSTEM = (
    "You are the synthesiser of a crew of agents. You receive the user's request and the "
    "answers the agents gave. Combine them into one final answer for the user: keep what they "
    "agree on, settle disagreements with reasons, and do not mention the crew or the agents."
)
"""Default system prompt of the synthesiser of the orchestrator and debate crews."""


class FinishUpdate(TypedDict, total=False):
    """What a node that ends a crew writes."""

    answer: str
    status: CrewStatus
    log: list[CrewMessage]


def remember_answer(ctx: NodeContext, memory: MemorySpec | None, task: str, answer: str) -> None:
    """Add a crew's final answer to its memory (when it remembers answers)."""
    remember(ctx, memory, note(task, "Answer", answer), source="answer", importance=0.8)


def task_message(task: str, recipient: str) -> CrewMessage:
    """The user's request as the first entry of the log."""
    return CrewMessage(sender="user", recipient=recipient, content=task, type="task")


def turn_log(log: list[CrewMessage]) -> list[CrewMessage]:
    """The entries of the current turn: from the last request of the user on. On a thread
    (one run per turn, guides/threads.md) the log holds every turn; each crew's bookkeeping
    (answers, visits, rounds) counts only the current turn's."""
    for i in range(len(log) - 1, -1, -1):
        if log[i].sender == "user" and log[i].type == "task":
            return log[i:]
    return log


def logged(log: list[CrewMessage], task: str) -> bool:
    """Whether the current turn's request ``task`` is in the log already."""
    current = turn_log(log)
    return bool(current) and current[0].type == "task" and current[0].content == task


def this_turn(log: list[CrewMessage], task: str) -> list[CrewMessage]:
    """The entries of the turn asking ``task``: none before its request is logged."""
    return turn_log(log) if logged(log, task) else []


EARLIER = "\n\nEarlier in this conversation:"
"""Heads the earlier turns in the task of a crew's later turn (`crew_turn`)."""


def crew_turn(previous: CrewState, message: str) -> dict[str, Any]:
    """The input of a crew's next turn on a thread (a chat), given its last turn's final
    state: the crew's bookkeeping reset to its defaults (the log goes on), and the task is
    `message` followed by the earlier turns' requests and answers, so every agent prompted
    with the task sees the conversation:

        first = app.run_sync({"task": "Lyon or Nantes for a bakery?"}, thread_id="t")
        app.run_sync(crew_turn(first.state, "And for a bookshop?"), thread_id="t")
    """
    question, _, earlier = previous.task.partition(EARLIER)
    pairs = earlier.strip("\n")
    said = f"- user: {question.strip()}\n- crew: {previous.answer or '(no answer)'}"
    update: dict[str, Any] = {
        name: info.get_default(call_default_factory=True)
        for name, info in type(previous).model_fields.items()
        if name not in ("log", "task")
    }
    update["task"] = f"{message}{EARLIER}\n{pairs + chr(10) if pairs else ''}{said}"
    return update


def roster(agents: list[Agent]) -> str:
    """One `- name: description` line per agent."""
    return "\n".join(f"- {a.name}: {a.description or '(no description)'}" for a in agents)


def resolve_synthesiser(synthesiser: Any, fallback: Any, problems: list[str]) -> Agent | None:
    """The synthesiser as a model agent: given as an Agent or an LLM, else built on `fallback`."""
    if synthesiser is None:
        synthesiser = fallback
    if synthesiser is None:
        problems.append(
            "the crew has no model for its synthesis: pass synthesiser=agent_from_llm("
            "'synthesiser', llm, system) or synthesiser=llm"
        )
        return None
    if isinstance(synthesiser, Agent):
        if synthesiser.llm is None:
            problems.append(
                f"the synthesiser {synthesiser.name!r} is a graph agent; a synthesiser must be a "
                "model agent (agent_from_llm) or an LLM"
            )
            return None
        return synthesiser
    if callable(getattr(synthesiser, "complete", None)):
        return agent_from_llm("synthesiser", synthesiser, SYNTHESISER_SYSTEM, max_tokens=2048)
    problems.append(
        f"synthesiser={synthesiser!r} is neither an Agent nor an LLM: pass "
        "agent_from_llm('synthesiser', llm, system) or an LLM"
    )
    return None


async def synthesise_answers(
    synth: Agent,
    ctx: NodeContext,
    request: str,
    heading: str,
    answers: list[CrewMessage],
    memory: MemorySpec | None = None,
) -> FinishUpdate:
    """Ask the synthesiser for one answer from `answers`; an empty reply is `bad_output`.

    With `memory`, memories relevant to `request` are recalled into its system prompt first,
    and the final answer is remembered."""
    assert synth.llm is not None
    parts = [f"[{m.sender}]\n{m.content or '(no answer)'}" for m in answers]
    prompt = (
        f"Request: {request}\n\n{heading}\n\n" + "\n\n".join(parts) + "\n\n"
        "Write the final answer to the request."
    )
    system = synth.system
    if memory is not None:
        system = with_memories(system, await recall(ctx, memory, request))
    reply, made = await complete_turn(
        JournaledLLM(synth.llm, ctx), [user(prompt)], system=system, max_tokens=synth.max_tokens
    )
    text = reply.text.strip()
    if reply.truncated:
        return {
            "status": "truncated",
            "log": [
                CrewMessage(
                    sender="crew",
                    recipient="user",
                    content=f"the synthesiser {synth.name!r}: "
                    + truncation_reason(reply, synth.max_tokens, made),
                    type="critique",
                    metadata={"stop_reason": reply.stop_reason, "partial": text},
                )
            ],
        }
    if not text:
        return {
            "status": "bad_output",
            "log": [
                CrewMessage(
                    sender="crew",
                    recipient="user",
                    content=f"the synthesiser {synth.name!r} gave an empty answer",
                    type="critique",
                    metadata={"stop_reason": reply.stop_reason},
                )
            ],
        }
    remember_answer(ctx, memory, request, text)
    return {
        "answer": text,
        "status": "done",
        "log": [CrewMessage(sender=synth.name, recipient="user", content=text, type="synthesis")],
    }
