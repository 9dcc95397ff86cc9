"""`flowgit mcp` (issue 6) driven by the official SDK's own stdio client: the CLI's operations
with the same rules and the same error messages."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Awaitable, Callable

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402  (a dependency of mcp)
from helpers import Repo, transitions  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

PLAN = """\
id: p
title: MCP plan
goal: Drive flowgit over MCP
tasks:
  - id: A
    title: First
  - id: B
    title: Second
    depends_on: [A]
"""

TOOLS = {"status", "next", "claim", "start", "heartbeat", "done", "fail", "plan_show", "task_add",
         "graph", "diff", "approve", "events"}


def serve(repo: Repo, scenario: Callable[["Client"], Awaitable[None]]) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "flowgit", "--repo", str(repo.path), "mcp"],
                                   env=dict(os.environ), cwd=str(repo.path))

    async def main() -> None:
        with anyio.fail_after(60):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    await scenario(Client(session))

    anyio.run(main)


class Client:
    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def raw(self, name: str, **args: Any) -> Any:
        return await self.session.call_tool(name, args)

    async def call(self, name: str, **args: Any) -> dict[str, Any]:
        res = await self.raw(name, **args)
        assert not res.is_error, (name, args, res.content)
        data = res.structured_content
        if data is None:
            data = json.loads(res.content[0].text)
        return data.get("result", data) if set(data) == {"result"} else data

    async def error(self, name: str, **args: Any) -> str:
        res = await self.raw(name, **args)
        assert res.is_error, (name, args, res)
        return res.content[0].text


def cli_error(repo: Repo, *args: str) -> tuple[int, dict[str, Any]]:
    res = repo.run(*args, "--json")
    return res.code, res.json["error"]


def test_tools_round_trip_and_authoring(repo: Repo) -> None:
    """One server: the tool list, claim -> start -> heartbeat -> done -> fail, then task_add,
    plan_show, graph, diff and events; the CLI sees every change."""
    repo.plan("p", PLAN)
    base = repo.git("rev-parse", "HEAD")

    async def scenario(c: Client) -> None:
        tools = (await c.session.list_tools()).tools
        names = {t.name for t in tools}
        assert TOOLS <= names, TOOLS - names
        assert all(t.description for t in tools)
        st = await c.call("status", plan="p")
        assert st["plan"] == "p" and st["ready"] == ["A"] and st["counts"]["ready"] == 1
        assert (await c.call("next", plan="p"))["task"] == "p/A"
        claimed = await c.call("claim", worker="agent-1", target="p")
        assert claimed["task"] == "p/A" and claimed["worker"] == "agent-1" and claimed["lease_until"]
        await c.call("start", task="p/A", worker="agent-1")
        await c.call("heartbeat", task="p/A", worker="agent-1")
        st = await c.call("status", plan="p")
        assert {t["id"]: t["state"] for t in st["tasks"]} == {"A": "in_progress", "B": "pending"}
        await c.call("done", task="p/A", worker="agent-1", note="schema in place", files_modified=["db.sql"])
        st = await c.call("status", plan="p")
        assert {t["id"]: t["state"] for t in st["tasks"]} == {"A": "done", "B": "ready"}
        evs = (await c.call("events", plan="p", task="A"))["events"]
        assert [e["type"] for e in evs][-1] == "task.done"
        assert evs[-1]["data"]["note"] == "schema in place"
        assert evs[-1]["data"]["files_modified"] == ["db.sql"]
        # fail with retry goes through the same retry policy
        await c.call("claim", worker="agent-2", target="p/B")
        failed = await c.call("fail", task="p/B", worker="agent-2", error="flaky", mode="retry")
        assert failed["state"] == "retry_wait"

        added = await c.call("task_add", plan="p", task="C", title="Third", depends_on=["B"],
                             files=["c.txt"], acceptance=["c works"], priority="high")
        assert added
        st = await c.call("status", plan="p")
        assert "C" in {t["id"] for t in st["tasks"]}
        shown = await c.call("plan_show", plan="p")
        text = json.dumps(shown)
        assert "Third" in text and "c works" in text and "c.txt" in text
        old = await c.call("plan_show", plan="p", rev=base)
        assert "Third" not in json.dumps(old)
        graph = await c.call("graph", plan="p", format="mermaid")
        assert "A" in json.dumps(graph) and "C" in json.dumps(graph)
        diff = await c.call("diff", rev_a=base, rev_b="HEAD", plan="p")
        assert "C" in json.dumps(diff) and "tasks_added" in json.dumps(diff)
        evs = await c.call("events", plan="p")
        assert any(e["type"] == "plan.created" for e in evs["events"])
        msg = await c.error("task_add", plan="p", task="C", title="Again")
        assert "C" in msg

    serve(repo, scenario)
    # the MCP server wrote real commits that the CLI reads
    st = repo.ok("status", "p", "--json").json
    assert {t["id"]: t["state"] for t in st["tasks"]} == {"A": "done", "B": "retry_wait", "C": "pending"} or \
        {t["id"]: t["state"] for t in st["tasks"]} == {"A": "done", "B": "ready", "C": "pending"}  # retry due
    last = repo.ok("events", "p", "B", "--json").json["events"][-1]
    assert last["type"] == "task.failed" and last["data"]["retry_at"] and last["actor"] == "agent-2"
    assert "Flow-Event: done" in repo.git("log", "--format=%B", "-n", "20", transitions(repo))


def test_errors_are_the_cli_errors(repo: Repo) -> None:
    """An illegal transition, an unknown plan, nothing ready, a missing approval: the tool
    errors carry the CLI's message, code and exit code, and change nothing."""
    repo.plan("p", PLAN)
    messages: dict[str, str] = {}

    async def scenario(c: Client) -> None:
        await c.call("claim", worker="alice", target="p/A")
        for key, tool, args, cli in (
                ("done", "done", {"task": "p/A", "worker": "bob"}, ("done", "p/A", "--worker", "bob")),
                ("claim", "claim", {"worker": "bob", "target": "p/A"}, ("claim", "p/A", "--worker", "bob")),
                ("unknown", "status", {"plan": "nope"}, ("status", "nope")),
                ("nothing", "next", {"plan": "p"}, ("next", "p"))):
            messages[key] = await c.error(tool, **args)
            code, err = cli_error(repo, *cli)
            assert err["message"] in messages[key], (key, err, messages[key])
            assert f"[{err['code']}, exit {code}]" in messages[key], (key, err, messages[key])
        messages["mode"] = await c.error("fail", task="p/A", worker="alice", error="x", mode="bogus")
        # a value that looks like an option is refused, never read as one
        for tool, args in (("status", {"plan": "--help"}), ("claim", {"worker": "w", "target": "--sync"}),
                           ("events", {"plan": "p", "task": "--from-git"}), ("next", {"plan": "--json"})):
            said = await c.error(tool, **args)
            assert "[usage, exit 2]" in said and "cannot start with '-'" in said, (tool, said)
        said = await c.error("claim", worker="w", target="p/B", lease_seconds=0)  # not dropped
        assert "exit 2" in said and "--lease" in said, said
        # the illegal attempts changed nothing
        st = await c.call("status", plan="p")
        assert {t["id"]: (t["state"], t["worker"]) for t in st["tasks"]}["A"] == ("claimed", "alice")
        # a plan that needs an approval: claim is refused until `approve`
        cfg = repo.path / ".flow" / "config.yaml"
        # an approval through MCP is an agent's: this config names the agent allowed to give one
        cfg.write_text(cfg.read_text().replace("required: 0", "agents: [rita]\n  required: 1"))
        repo.git("commit", "-q", "-am", "one approval")
        repo.plan("q", PLAN.replace("id: p", "id: q"))
        repo.ok("submit", "q")
        messages["approval"] = await c.error("claim", worker="w", target="q")
        await c.call("approve", plan="q", reviewer="rita", comment="fine")
        assert (await c.call("status", plan="q"))["phase"] == "execute"
        assert (await c.call("claim", worker="w", target="q"))["task"] == "q/A"

    serve(repo, scenario)
    assert "bob" in messages["done"] or "alice" in messages["done"]
    assert "mode" in messages["mode"]
    assert "approv" in messages["approval"] and "q" in messages["approval"]


