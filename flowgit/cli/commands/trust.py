"""`flowgit trust [PLAN] [--list]`: show the commands `.flow/` would have flowgit run (and the
plans whose text becomes an agent's prompt), then trust them in this clone."""
from __future__ import annotations

from typing import Any

from flowgit.cli.app import App
from flowgit.core.commands import Command
from flowgit.ids import check_id
from flowgit.ops import trust
from flowgit.store.trust import TrustStore


def _status(st: TrustStore, cmd: Command) -> str:
    if st.trusted(cmd):
        return "trusted"
    return "changed" if st.was_trusted(cmd) else "new"


def trust_cmd(app: App, plan_id: str | None, list_only: bool) -> int:
    repo = app.repo
    repo.require_init()
    pids = [check_id(plan_id, "plan id")] if plan_id else repo.plan_ids()
    if plan_id:
        repo.load_plan(plan_id)
    st = trust.store(repo)
    commands = trust.every_command(repo, pids)
    rows: list[dict[str, Any]] = [{**c.as_json(), "status": _status(st, c)} for c in commands]
    plans: list[dict[str, Any]] = []
    for pid in pids:
        digest, files = trust.material(repo, pid)
        status = "trusted" if st.plan_trusted(pid, digest) else \
            "changed" if st.plan_was_trusted(pid) else "new"
        plans.append({"plan": pid, "files": files, "hash": digest, "status": status})
    todo = [c for c, r in zip(commands, rows) if r["status"] != "trusted"]
    todo_plans = [p for p in plans if p["status"] != "trusted"]
    recorded = {"commands": 0, "plans": 0}
    if not list_only and (todo or todo_plans):
        new_cmds, new_plans = trust.record(repo, todo, [p["plan"] for p in todo_plans], "flowgit trust",
                                           {p["plan"]: p["hash"] for p in todo_plans})
        recorded = {"commands": len(new_cmds), "plans": len(new_plans)}
    result = {"store": str(st.path), "commands": rows, "plans": plans, "recorded": recorded,
              "listed_only": list_only}
    app.out.result(result, _text(rows, plans, list_only))
    return 0


def _text(rows: list[dict[str, Any]], plans: list[dict[str, Any]], list_only: bool) -> str:
    import shlex

    untrusted = [r for r in rows if r["status"] != "trusted"]
    untrusted_plans = [p for p in plans if p["status"] != "trusted"]
    if not untrusted and not untrusted_plans:
        return (f"everything is trusted in this clone: {len(rows)} command(s), "
                f"{len(plans)} plan(s)")
    head = "not trusted in this clone" if list_only else "trusted now in this clone"
    lines = [f"{head}:"]
    for r in untrusted:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted((r.get("env") or {}).items()))
        argv = " ".join(shlex.quote(a) for a in r["argv"])
        lines.append(f"  {r['file']} {r['key']} ({r['status']}): {env + ' ' if env else ''}{argv}")
    for p in untrusted_plans:
        lines.append(f"  plan {p['plan']} ({p['status']}), the text agents get: {', '.join(p['files'])}")
    trusted = len(rows) - len(untrusted) + len(plans) - len(untrusted_plans)
    if trusted:
        lines.append(f"already trusted: {trusted}")
    if list_only:
        lines.append("review them, then run `flowgit trust` (without --list) to trust them")
    return "\n".join(lines)
