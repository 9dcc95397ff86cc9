"""run's task branches `flow/PLAN/TASK` beside the state branch and its claim refs (format 2)."""
from __future__ import annotations

import pytest

from flowgit.runner.worktrees import branch_taken


@pytest.mark.parametrize("plan,branch,taken", [
    ("state", "flow/state", "flow/state"),
    ("state-claims", "flow/state", "flow/state-claims"),
    ("stately", "flow/state", None),
    ("web", "flow/state", None),
    ("team", "flow/team/state", "flow/team/state"),  # flow/team/TASK: a folder of the state branch
    ("state", "flow/ops", None),
])
def test_a_plan_whose_branches_git_cannot_make_is_named(plan: str, branch: str, taken: str | None) -> None:
    why = branch_taken(plan, branch)
    assert (why is None) == (taken is None)
    if taken is not None:
        assert why is not None and f"beside {taken}," in why and "rename the plan" in why
