"""`hierarchical_planner`: decompose the goal into a tree of subtasks, then run the leaves
in order."""

import asyncio
from typing import Any

from flowstate.engine import END, START, Command, GraphBuilder, NodeContext, Send
from flowstate.llm import LLM, JournaledLLM, Message, assistant, user

from ._common import Executor, ask
from ._parsing import parse_list, parse_yes_no
from ._planner_executors import _add_executor
from ._planner_loop import _dispatch
from ._planner_models import DecomposeJob, HierarchicalState, Plan, PlanStep, TaskNode
from ._planner_prompts import _DECOMPOSE, _DECOMPOSE_AGAIN, _IS_COMPLEX, PLANNER_SYSTEM


def hierarchical_planner(
    llm: LLM,
    executor: Executor | None = None,
    *,
    max_depth: int = 2,
    name: str = "hierarchical_planner",
) -> GraphBuilder[HierarchicalState]:
    """Decompose the goal into a tree of subtasks, then run the leaves in order.

    The model breaks the goal into 3–5 subtasks and says, for each, whether it is complex
    (yes/no); complex subtasks are broken down the same way, level by level (the subtasks of
    one level are decomposed in parallel), down to `max_depth` levels below the goal. The
    leaves, in tree order, become a sequential plan run with `executor`, each step seeing the
    results of the steps before it. A leaf that fails ends the run with `status="failed"`.
    An answer with no readable list is sent back once; if it still has none, that task is
    treated as a leaf.
    """
    if max_depth < 1:
        raise ValueError(f"hierarchical_planner(max_depth={max_depth}): use 1 or more")
    g = GraphBuilder(HierarchicalState, name=name)
    mode = _add_executor(g, llm, executor, name)

    async def expand(state: HierarchicalState) -> Command:
        """Send the next level of complex subtasks to `decompose`, or build the plan."""
        if state.level == 0:
            root = DecomposeJob(path="", description=state.goal, depth=0)
            return Command(update={"level": 1}, goto=[Send("decompose", root)])
        frontier = [
            n for n in state.tree if n.depth == state.level and n.complex and n.depth < max_depth
        ]
        if frontier:
            by_path = {n.path: n for n in state.tree}
            jobs: list[str | Send] = [
                Send(
                    "decompose",
                    DecomposeJob(
                        path=n.path,
                        description=n.description,
                        depth=n.depth,
                        lineage=[state.goal, *_lineage(n, by_path)],
                    ),
                )
                for n in frontier
            ]
            return Command(update={"level": state.level + 1}, goto=jobs)
        leaves = _leaves(state.tree) or [state.goal]
        steps = [
            PlanStep(id=i, description=d, depends_on=[i - 1] if i > 1 else [])
            for i, d in enumerate(leaves, 1)
        ]
        return Command(update={"plan": Plan(steps=steps), "status": "executing"}, goto="dispatch")

    async def decompose(job: DecomposeJob, ctx: NodeContext) -> dict[str, Any]:
        """Break one task into subtasks and ask which of them are complex."""
        goal = job.lineage[0] if job.lineage else job.description
        above = job.lineage[1:]  # the tasks between the goal and this one
        prompt = _DECOMPOSE.format(goal=goal, lineage=_lineage_text(above), task=job.description)
        model = JournaledLLM(llm, ctx)
        messages: list[Message] = [user(prompt)]
        reply = await model.complete(messages, system=PLANNER_SYSTEM)
        items = parse_list(reply.text)
        if not items:  # one correction, then the task stays a leaf
            messages += [assistant(reply.text.strip() or "(empty reply)"), user(_DECOMPOSE_AGAIN)]
            reply = await model.complete(messages, system=PLANNER_SYSTEM)
            items = parse_list(reply.text)
        depth = job.depth + 1
        complex_flags = [False] * len(items)
        if depth < max_depth and items:
            child_lineage = _lineage_text([*above, job.description] if job.path else [])
            questions = [
                ask(
                    llm,
                    ctx,
                    _IS_COMPLEX.format(goal=goal, lineage=child_lineage, task=item),
                    system=PLANNER_SYSTEM,
                    max_tokens=50,
                )
                for item in items
            ]
            # gather starts the calls in order, so they take journal sequence numbers in order
            answers = await asyncio.gather(*questions)
            complex_flags = [parse_yes_no(a) is True for a in answers]
        prefix = f"{job.path}." if job.path else ""
        return {
            "tree": [
                TaskNode(
                    path=f"{prefix}{i}",
                    parent=job.path,
                    description=item,
                    depth=depth,
                    complex=flag,
                )
                for i, (item, flag) in enumerate(zip(items, complex_flags, strict=True), 1)
            ]
        }

    g.add_node("expand", expand, goto=["decompose", "dispatch"], max_visits=max_depth + 2)
    g.add_node("decompose", decompose)
    g.add_node(
        "dispatch",
        _dispatch(mode, parallel=False, replan=False, max_replans=0),
        goto=["execute", END],
    )
    g.add_edge(START, "expand")
    g.add_edge("decompose", "expand")
    g.add_edge("execute", "dispatch")
    return g


def _lineage(node: TaskNode, by_path: dict[str, TaskNode]) -> list[str]:
    chain: list[str] = []
    parent = by_path.get(node.parent)
    while parent is not None:
        chain.append(parent.description)
        parent = by_path.get(parent.parent)
    return chain[::-1]


def _lineage_text(chain: list[str]) -> str:
    return f"This task is part of: {' > '.join(chain)}\n" if chain else ""


def _leaves(tree: list[TaskNode]) -> list[str]:
    parents = {n.parent for n in tree}
    ordered = sorted(tree, key=lambda n: tuple(int(p) for p in n.path.split(".")))
    return [n.description for n in ordered if n.path not in parents]
