"""The whole pipeline over MCP (issue 15), driven by the official SDK's stdio client against
`flowgit mcp` as a real process: plan creation, submit, a person's approval through the CLI,
claim, done, the checkpoint's review, finish; specs and ADRs as resources; the pipeline's
steps as prompts; every result sent once, as text; the tool list under 8 KB."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable

import pytest

pytest.importorskip("mcp")

import anyio  # noqa: E402  (a dependency of mcp)
from helpers import Repo, init_repo, state_branch  # noqa: E402
from helpers.agents import agent_log, use_fake_agent  # noqa: E402
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

TOOL_LIST_LIMIT = 8000

PLAN = """\
id: p
title: Pipeline over MCP
goal: Ship a greeting
tasks:
  - id: A
    title: Write hello
    files: [hello.txt]
    acceptance: ["hello.txt says hello"]
  - id: B
    title: Write world
    depends_on: [A]
checkpoints:
  - id: CP
    after: [B]
"""

SPEC = """\
plan: p
requirements:
  - id: R1
    kind: ubiquitous
    text: The greeting shall say hello.
    tasks: [A]
questions:
  - id: Q1
    question: Which language?
    answer: null
"""


def field(obj: Any, name: str) -> Any:
    """A result's field by its 2.x name, or by the camelCase name of the 1.x SDK."""
    if hasattr(obj, name):
        return getattr(obj, name)
    head, *rest = name.split("_")
    return getattr(obj, head + "".join(w.title() for w in rest))


class Client:
    def __init__(self, session: ClientSession) -> None:
        self.session = session

    async def raw(self, name: str, /, **args: Any) -> Any:
        return await self.session.call_tool(name, args)

    async def call(self, name: str, /, **args: Any) -> dict[str, Any]:
        """A tool's result: one text block holding one JSON object, and nothing else."""
        res = await self.raw(name, **args)
        assert not field(res, 'is_error'), (name, args, res.content)
        assert field(res, 'structured_content') is None, (name, "sent twice")
        assert len(res.content) == 1 and res.content[0].type == "text", res.content
        data = json.loads(res.content[0].text)
        assert isinstance(data, dict)
        return data

    async def text(self, name: str, /, **args: Any) -> str:
        """A tool whose result is text for a reader (prime, task_show in text or markdown)."""
        res = await self.raw(name, **args)
        assert not field(res, 'is_error') and field(res, 'structured_content') is None and len(res.content) == 1, res
        return str(res.content[0].text)

    async def error(self, name: str, /, **args: Any) -> str:
        res = await self.raw(name, **args)
        assert field(res, 'is_error'), (name, args, res)
        text = res.content[0].text
        assert "\n" not in text and "Traceback" not in text, text
        return str(text)

    async def prompt(self, name: str, /, **args: str) -> str:
        res = await self.session.get_prompt(name, args)
        return "\n".join(m.content.text for m in res.messages)

    async def resource(self, uri: str) -> str:
        res = await self.session.read_resource(uri)
        return "".join(c.text for c in res.contents)


def serve(repo: Repo, scenario: Callable[[Client], Awaitable[None]]) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "flowgit", "--repo", str(repo.path), "mcp"],
                                   env=dict(os.environ), cwd=str(repo.path))

    async def main() -> None:
        with anyio.fail_after(90):
            async with stdio_client(params) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    await scenario(Client(session))

    anyio.run(main)


def needs_approval(repo: Repo) -> None:
    cfg = repo.path / ".flow" / "config.yaml"
    cfg.write_text(cfg.read_text().replace("required: 0", "required: 1"))
    repo.git("commit", "-q", "-am", "plans need one approval")


@pytest.mark.parametrize("storage", ["1", "2"])
def test_the_loop_through_the_official_client(tmp_path: Path, storage: str) -> None:
    """plan_new -> submit -> (a person approves through the CLI) -> claim -> done -> the
    checkpoint's review -> (a person approves it) -> finish, with the agent's approvals refused
    and the review prompts printing the person's command; in both storage formats (event logs
    in the work tree, or on the flow/state branch)."""
    repo = init_repo(tmp_path / "repo", storage)
    needs_approval(repo)

    async def scenario(c: Client) -> None:
        created = await c.call("plan_new", plan="p", text=PLAN)
        assert created["plan"] == "p" and created["tasks"] == 2
        assert (await c.call("submit", plan="p"))["plan"] == "p"
        assert (await c.call("status", plan="p"))["phase"] == "plan_review"

        refused = await c.error("approve", plan="p", reviewer="claude")
        assert "only people approve" in refused and "exit 1" in refused, refused
        review = await c.prompt("review", plan="p")
        assert "flowgit approve p --reviewer" in review and "Write hello" in review
        # the person decides, in a terminal
        repo.ok("approve", "p", "--reviewer", "alice", "--comment", "go")
        assert (await c.call("status", plan="p"))["phase"] == "execute"

        claimed = await c.call("claim", worker="agent", target="p")
        assert claimed["task"] == "p/A" and claimed["worker"] == "agent"
        await c.call("fail", task="p/A", worker="agent", error="disk full")
        assert "failed" in await c.error("claim", worker="agent", target="p/A")
        await c.call("retry", task="p/A", worker="agent")
        primed = await c.text("prime", worker="agent")
        assert primed.startswith("(Through MCP each `flowgit X` below is the tool X")
        assert "## The loop" in primed and "Held by agent (0)" in primed and len(primed.encode()) <= 8000
        assert await c.resource("flowgit://prime") == await c.text("prime")
        claimed = await c.call("claim", worker="agent", target="p", context=True)
        assert claimed["task"] == "p/A"
        ctx = claimed["context"]
        assert ctx["task"] == "p/A" and ctx["acceptance"] == ["hello.txt says hello"]
        assert ctx["files"] == ["hello.txt"] and ctx["plan"]["goal"] == "Ship a greeting"
        assert await c.call("task_show", task="p/A") == ctx  # one object, two ways to ask
        assert "Write hello" in await c.text("task_show", task="p/A", format="markdown")
        await c.call("done", task="p/A", worker="agent", note="hello written", files_modified=["hello.txt"])
        assert (await c.call("claim", worker="agent", target="p"))["task"] == "p/B"
        await c.call("release", task="p/B", worker="agent")
        assert (await c.call("claim", worker="agent", target="p/B"))["task"] == "p/B"
        await c.call("done", task="p/B", worker="agent", note="world written")

        view = await c.call("checkpoint", plan="p")
        assert view["checkpoint"] == "CP" and view["state"] == "reached"
        assert {n["task"]: n["note"] for n in view["notes"]} == {"A": "hello written", "B": "world written"}
        refused = await c.error("checkpoint", plan="p", approve=True, reviewer="claude")
        assert "only people approve" in refused, refused
        shown = await c.prompt("checkpoint", plan="p")
        assert "flowgit checkpoint p CP --approve --reviewer" in shown and "world written" in shown
        assert "flowgit checkpoint p CP --approve" in await c.prompt("review", plan="p")
        repo.ok("checkpoint", "p", "CP", "--approve", "--reviewer", "alice")

        finished = await c.call("finish", plan="p")
        assert finished["plan"] == "p"
        assert (await c.call("status", plan="p"))["phase"] == "complete"
        said = await c.call("signal", plan="p", name="deploy", data={"env": "staging"})
        assert said["signal"] == "deploy" and said["configured"] is False

    serve(repo, scenario)
    signal = repo.ok("events", "p", "--json").json["events"][-1]
    assert signal["type"] == "signal.received" and signal["data"]["data"] == {"env": "staging"}
    approvals = [e for e in repo.ok("events", "p", "--json").json["events"]
                 if e["type"] in ("plan.approved", "checkpoint.approved")]
    assert [(e["data"]["reviewer"], e["data"]["via"]) for e in approvals] == [("alice", "cli"), ("alice", "cli")]


def test_tool_list_is_small_and_text_only(repo: Repo) -> None:
    """The tool list on the wire stays under 8 KB, with no output schema; every tool has a
    description; the pipeline's steps are prompts."""
    sizes: dict[str, int] = {}

    async def scenario(c: Client) -> None:
        listed = await c.session.list_tools()
        wire = listed.model_dump_json(by_alias=True, exclude_none=True)
        sizes["tools"] = len(wire.encode())
        names = {t.name for t in listed.tools}
        assert {"plan_new", "submit", "checkpoint", "finish", "release", "retry", "signal", "claim",
                "done", "prime", "task_show"} <= names
        for tool in listed.tools:
            assert tool.description and field(tool, 'output_schema') is None, tool.name
            schema = field(tool, 'input_schema')
            assert "title" not in schema and all("title" not in p and "anyOf" not in p
                                                 for p in schema["properties"].values()), tool.name
        prompts = {p.name for p in (await c.session.list_prompts()).prompts}
        assert {"explore", "plan", "run", "checkpoint", "finish", "review"} <= prompts
        assert "design options" in await c.prompt("explore", plan="p", goal="Greet")
        written = await c.prompt("plan", plan="p", goal="Greet")
        assert "plan_new" in written and "submit" in written and "checkpoints:" in written
        assert "claim" in await c.prompt("run", plan="p", worker="w1")
        assert "finish tool" in await c.prompt("finish", plan="p")
        said = await c.prompt("review", plan="nope")
        assert said.startswith("flowgit refused this: [") and "'nope'" in said, said
        assert "exit 1" in await c.prompt("checkpoint", plan="nope")

    serve(repo, scenario)
    assert sizes["tools"] < TOOL_LIST_LIMIT, sizes


def test_specs_and_adrs_are_resources(repo: Repo) -> None:
    repo.plan("p", PLAN)
    repo.write(".flow/plans/p/spec.yaml", SPEC)
    repo.git("add", ".flow/plans/p/spec.yaml")
    repo.git("commit", "-q", "-m", "spec")
    repo.ok("adr", "new", "Greet in English", "--plan", "p")
    errors: list[str] = []

    async def scenario(c: Client) -> None:
        assert await c.resource("flowgit://plans/p/spec") == SPEC
        adr = await c.resource("flowgit://adrs/ADR-0001")
        assert "Greet in English" in adr and "id: ADR-0001" in adr
        assert "ADR-0001 [proposed] Greet in English: flowgit://adrs/ADR-0001" in await c.resource("flowgit://adrs")
        templates = {field(t, 'uri_template') for t in field(await c.session.list_resource_templates(), 'resource_templates')}
        assert {"flowgit://plans/{plan}/spec", "flowgit://adrs/{adr}"} <= templates
        for uri in ("flowgit://plans/nope/spec", "flowgit://adrs/ADR-0042", "flowgit://adrs/..",
                    "flowgit://plans/..%2F..%2Fetc/spec"):
            with pytest.raises(Exception) as info:
                await c.resource(uri)
            errors.append(str(info.value))

    serve(repo, scenario)
    assert "no plan 'nope'" in errors[0] and "no ADR-0042" in errors[1], errors
    assert all("Traceback" not in e for e in errors)


def test_plan_new_refuses_bad_text_and_writes_nothing(repo: Repo) -> None:
    before = repo.commits()
    said: dict[str, str] = {}

    async def scenario(c: Client) -> None:
        said["yaml"] = await c.error("plan_new", plan="p", text="id: p\ntasks: [\n")
        said["schema"] = await c.error("plan_new", plan="p", text="id: p\ntitle: x\ntasks:\n  - title: no id\n")
        said["dash"] = await c.error("plan_new", plan="--help")
        md = await c.call("plan_new", plan="m", markdown=True,
                          text="# Markdown plan\n\n- [ ] First step\n- [ ] Second step\n")
        assert md["tasks"] == 2
        # edit and remove a task (plan.yaml spliced, one commit each), with the CLI's refusals
        await c.call("plan_new", plan="e", text=PLAN.replace("id: p", "id: e"))
        said["waited on"] = await c.error("task_remove", task="e/A")
        await c.call("task_edit", task="e/B", title="Write the world", files=["world.txt"], clear=["depends_on"])
        shown = (await c.call("plan_show", plan="e"))["definition"]["tasks"]
        assert shown[1] == {"id": "B", "title": "Write the world", "files": ["world.txt"]}, shown
        await c.call("task_remove", task="e/A")
        assert [t["id"] for t in (await c.call("plan_show", plan="e"))["definition"]["tasks"]] == ["B"]
        said["unknown"] = await c.error("task_edit", task="e/Z", title="x")

    serve(repo, scenario)
    assert "[invalid_file, exit 1] text:3: invalid YAML" in said["yaml"], said
    assert "plan.yaml:4: tasks[0]: missing required key 'id'" in said["schema"], said
    assert not any("flowgit-mcp-" in s for s in said.values())
    assert "cannot start with '-'" in said["dash"]
    assert "B" in said["waited on"] and "exit 1" in said["waited on"], said
    assert "Z" in said["unknown"] and "exit 1" in said["unknown"], said
    # the two plans (format 2: each on the branch and its event in the state), one edit, one
    # removal: the refusals wrote nothing
    assert repo.commits() == before + (6 if state_branch(repo) else 4)
    assert repo.ok("status", "m", "--json").json["counts"]["pending"] + \
        repo.ok("status", "m", "--json").json["counts"]["ready"] == 2


def test_explore_answer_and_draft_through_mcp(repo: Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """explore (an explorer agent: a fake `claude -p`, trusted by the person) -> the questions
    in the spec resource -> spec_answer -> plan_draft, refused until the person trusts what the
    agents wrote, then the first round invalid and the second valid -> submit, all through the
    official client."""
    use_fake_agent(repo)
    monkeypatch.setenv("FAKE_AGENT_LOG", str(tmp_path / "agent.log"))

    async def scenario(c: Client) -> None:
        explored = await c.call("explore", plan="greet", executor="fake", goal="Greet people")
        assert explored["questions"] == ["Q1", "Q2"] and explored["adr"] == "ADR-0001"
        spec = await c.resource("flowgit://plans/greet/spec")
        assert "Where do greetings go" in spec
        assert "Greet" in await c.resource("flowgit://adrs/ADR-0001")
        answered = await c.call("spec_answer", plan="greet", question="Q1", text="-- a file, not stdout")
        assert answered["open"] == ["Q2"]
        assert "-- a file, not stdout" in await c.resource("flowgit://plans/greet/spec")
        refused = await c.error("spec_answer", plan="greet", question="Q9", text="x")
        assert "Q9" in refused and "exit 1" in refused
        # what came through MCP is an agent's: its text reaches no agent's prompt until a person trusts it
        untrusted = await c.error("plan_draft", plan="greet", executor="fake")
        assert "is not trusted in this clone" in untrusted and "flowgit trust greet" in untrusted
        repo.ok("trust", "greet")
        drafted = await c.call("plan_draft", plan="greet", executor="fake")
        assert drafted["rounds"] == 2 and drafted["phase"] == "draft" and drafted["tasks"] == 3
        assert (await c.call("submit", plan="greet"))["plan"] == "greet"
        unknown = await c.error("plan_draft", plan="greet", executor="nosuch")
        assert "nosuch" in unknown and "exit" in unknown, unknown

    serve(repo, scenario)
    assert repo.ok("status", "greet", "--json").json["phase"] == "execute"
    calls = [c["role"] for c in agent_log(tmp_path / "agent.log")]
    assert calls.count("explore") == 1 and calls.count("plan") == 2
