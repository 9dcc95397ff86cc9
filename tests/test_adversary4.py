"""The fourth session's adversary: what a hostile teammate who can push any branch, and
`flow/state` itself, can make a reviewer's clone do through what landed since 2f296e7 (the
approval gates, the fast YAML path, the one-pass log fold, the derived cache in the git dir,
the line scanner of `task add`). Each case runs real clones of one bare remote, the way the
attack arrives: by `flowgit sync`, `git pull` or a file planted in the work tree."""
from __future__ import annotations

import json
from pathlib import Path

from helpers import Repo
from test_adversary_gates import plan_hash, published, push_state_file
from test_state_plan import PLAN, set_approvals, state_repo

from flowgit.formats import yamlio
from flowgit.store import planedit
from flowgit.store.state import log_path


def rewrite_line(line: str, **changes: object) -> str:
    obj = json.loads(line)
    for key, value in changes.items():
        if key == "data":
            obj["data"] = value
        else:
            obj[key] = value
    return json.dumps(obj, separators=(",", ":"))


def test_a_signed_events_line_rewritten_under_its_own_id_is_no_signed_approval(tmp_path: Path) -> None:
    """approvals.signed: an approval counts when a signed commit added its line, found by the
    event's id (`git log -S<id>`). Rewriting a line the maintainer's signed `submit` added into
    a `plan.approved` line under the same id changes no count of that id: the pickaxe still
    finds only the signed commit, and the sync fast-forwards (no id was dropped)."""
    from test_approvals import ssh_signing

    maintainer = state_repo(tmp_path / "maintainer", approvals=None)
    (tmp_path / "home").mkdir()
    ssh_signing(maintainer, tmp_path / "home")
    set_approvals(maintainer, "{required: 1, signed: true}")
    maintainer.plan("P", PLAN)
    maintainer.ok("submit", "P")  # a signed state commit with this clone's key
    _, mallory = published(maintainer, tmp_path)
    path = log_path("P", "_plan")
    lines = mallory.git("show", f"flow/state:{path}").splitlines()
    target = next(i for i, line in enumerate(lines) if json.loads(line)["type"] == "plan.phase")
    lines[target] = rewrite_line(lines[target], type="plan.approved", actor="mallory", data={
        "reviewer": "maintainer", "comment": "lgtm", "plan_hash": plan_hash(mallory), "via": "cli"})
    push_state_file(mallory, tmp_path, path, "\n".join(lines) + "\n")
    maintainer.ok("sync")
    approvals = maintainer.ok("status", "P", "--json").json.get("approvals", [])
    assert approvals == [], approvals  # no approval was ever made, signed or not
    res = maintainer.proc("claim", "P/T1", "--worker", "w")
    assert res.returncode == 1 and "approval" in res.stderr, (res.returncode, res.stdout, res.stderr)


def test_task_add_after_a_pull_keeps_a_kept_block_scalar_of_the_last_task(repo: Repo) -> None:
    """The line scanner of `task add` (planslice.scan) took a last line of spaces without a
    line break into the last task's `|+` text; the splice then ended that line, and the
    untouched task's description gained a line ('line one\\n\\n' -> 'line one\\n\\n\\n').
    What is written must be what the round-trip editor writes."""
    repo.plan("p", "id: p\ntitle: P\ntasks:\n  - id: t0\n    title: zero\n")
    text = ("id: p\ntitle: P\ntasks:\n  - id: t0\n    title: zero\n  - id: t1\n    title: one\n"
            "    description: |+\n      line one\n\n  ")
    path = repo.path / ".flow/plans/p/plan.yaml"
    path.write_text(text)
    repo.git("commit", "-q", "--no-verify", "-am", "a teammate's edit, pulled")
    repo.ok("task", "add", "p", "n1", "--title", "New")
    assert yamlio.loads(path.read_text(), "x")["tasks"][1]["description"] == "line one\n\n"
    assert path.read_text() == planedit.append_tasks(text, "plan.yaml", [{"id": "n1", "title": "New"}])
