"""The `approvals:` settings of config.yaml that say how a plan counts as approved, checked
(docs/SECURITY.md): by `approve` events (`via: events`), by a merge into the protected branch
(`via: merge`), only in signed commits (`signed`), and which agents may approve (`agents`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

from flowgit.errors import InvalidFile


@dataclass(frozen=True)
class ApprovalRules:
    """How many approvals a plan needs, and where they are recorded."""

    required: int
    via: str = "events"
    branch: str | None = None
    signed: bool = False
    agents: tuple[str, ...] = ()


def approval_rules(approvals: Mapping[str, Any], where: str, whole: Callable[[Any, str], int]) -> ApprovalRules:
    """`whole(value, where)`: the config's own check of a whole number."""
    via = approvals.get("via", "events")
    if via not in ("events", "merge"):
        raise InvalidFile(f"{where}: approvals.via: {via!r}: use events or merge")
    signed = approvals.get("signed", False)
    if not isinstance(signed, bool):
        raise InvalidFile(f"{where}: approvals.signed: expected true or false, got {signed!r}")
    required = whole(approvals.get("required", 1 if via == "merge" else 0), f"{where}: approvals.required")
    if via == "merge" and (required != 1 or approvals.get("auto_approve")):
        raise InvalidFile(f"{where}: approvals: with via: merge the merge is the one approval: "
                          "set required: 1 (or leave it out) and no auto_approve")
    if signed and approvals.get("auto_approve"):
        raise InvalidFile(f"{where}: approvals: signed: true counts only signed approvals: "
                          "auto_approve cannot give one")
    branch = approvals.get("branch")
    if branch is not None and (not isinstance(branch, str) or not branch or branch.startswith("-")):
        raise InvalidFile(f"{where}: approvals.branch: {branch!r}: a branch name, like main")
    agents = approvals.get("agents") or []
    if not isinstance(agents, list) or not all(isinstance(a, str) and a for a in agents):
        raise InvalidFile(f"{where}: approvals.agents: expected a list of names, got {agents!r}")
    return ApprovalRules(required, via, branch, signed, tuple(agents))
