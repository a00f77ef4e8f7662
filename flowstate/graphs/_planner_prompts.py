"""What the planners say to the model."""

PLANNER_SYSTEM = (
    "You are a planner. You break goals into concrete steps that an assistant can carry out "
    "one at a time, and you answer in exactly the format you are asked for."
)

_PLAN = """\
Goal: {goal}

Write a plan to reach the goal as a numbered list, one step per line ("1. ...", "2. ...").
Make every step a concrete task; use as few steps as the goal needs (at most {max_steps})."""

_DAG_PLAN = """\
Goal: {goal}

Write a plan to reach the goal as a numbered list, one step per line. Steps that do not need
each other's results run in parallel, so end every step with the numbers of the steps whose
results it needs: "(depends on: 1, 2)", or "(depends on: none)". Use at most {max_steps} steps.
Example:
1. Find the population of Lyon (depends on: none)
2. Find the population of Nantes (depends on: none)
3. Add the two populations (depends on: 1, 2)"""

_REPLAN = """\
Goal: {goal}

The plan has to change. Steps already completed (they stay in the plan; do not repeat them):
{completed}
{failed}{rejected}
Write the remaining steps to reach the goal as a numbered list, one step per line, at most \
{max_steps} steps."""

_FAILED_STEPS = """
Steps that failed (replace them with steps that can succeed):
{failed}
"""

_REJECTED = """
Your last answer could not be used: {feedback}
"""

_DAG_REPLAN_TAIL = """
Number the new steps from {next_id} on, and end every step with "(depends on: ...)" listing \
the numbers of the steps whose results it needs (completed steps included), or \
"(depends on: none)"."""

_DECOMPOSE = """\
Overall goal: {goal}
{lineage}Task: {task}

Break this task into 3 to 5 subtasks that together accomplish it, as a numbered list, one \
subtask per line ("1. ...")."""

_DECOMPOSE_AGAIN = (
    'I could not find a numbered list in your answer. Write the 3 to 5 subtasks as "1. ...", '
    '"2. ...", one per line, and nothing else.'
)

_IS_COMPLEX = """\
Overall goal: {goal}
{lineage}Subtask: {task}

Is this subtask complex enough that it should be broken down into smaller subtasks before \
anyone works on it? Answer "yes" or "no"."""
