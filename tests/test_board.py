"""`flowgit board` over HTTP with the standard library: a real board process on a real
repository, read the way a browser would (pages, the live channel), and the refusals."""
from __future__ import annotations

import re
import threading
import time
from typing import Iterator

import pytest

from helpers.board import PLAN, Board, column_counts, column_ids
from helpers import Repo


@pytest.fixture
def web(repo: Repo) -> Repo:
    repo.plan("web", PLAN)
    repo.ok("submit", "web")
    return repo


@pytest.fixture
def board(web: Repo) -> Iterator[Board]:
    b = Board(web)
    yield b
    b.stop()


def test_plans_page_lists_each_plan_with_phase_progress_and_parent(web: Repo) -> None:
    web.ok("plan", "new", "child", "--title", "Child plan", "--parent", "web")
    web.ok("task", "add", "child", "C-1", "--title", "Waits on web", "--dep", "web/T-4")
    web.ok("claim", "web/T-1", "--worker", "w1")
    web.ok("done", "web/T-1", "--worker", "w1")
    b = Board(web)
    try:
        html = b.get("/")
    finally:
        b.stop()
    row = re.search(r'<tr data-plan="web">(.*?)</tr>', html, re.S)
    assert row is not None
    assert "execute" in row.group(1) and 'value="25"' in row.group(1)  # 1 of 4 tasks
    assert ">1</span>/4<" in row.group(1)
    child = re.search(r'<tr data-plan="child">(.*?)</tr>', html, re.S)
    assert child is not None
    assert 'href="/plan/web"' in child.group(1)  # the parent, and the plan it waits on


def test_board_shows_columns_with_counts_workers_and_gates(web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "w1")
    web.ok("done", "web/T-1", "--worker", "w1", "--note", "first done")
    web.ok("claim", "web/T-3", "--worker", "agent-7")
    html = board.get("/plan/web")
    counts = column_counts(html)
    assert counts == {"waiting": 1, "ready": 1, "running": 1, "retry": 0, "done": 1, "stopped": 0}
    assert column_ids(html, "ready") == ["T-2"]
    assert column_ids(html, "running") == ["T-3"]
    running = html[html.index('data-column="running"'):html.index('data-column="retry"')]
    assert "agent-7" in running and "left on lease" in running
    assert 'class="gate s-pending" data-id="CP-1"' in html
    assert "behind CP-1" in html  # T-4 waits on the gate


def test_retry_wait_shows_the_next_attempt(web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "w1")
    web.ok("fail", "web/T-1", "--worker", "w1", "--error", "flaky <network>", "--retry")
    html = board.get("/plan/web")
    if column_counts(html)["retry"] == 1:  # the policy's first wait is short: it may be due already
        retry = html[html.index('data-column="retry"'):html.index('data-column="done"')]
        assert "next attempt" in retry and "flaky &lt;network&gt;" in retry


def test_every_value_is_escaped(web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "<img src=x onerror=alert(1)>")
    web.ok("done", "web/T-1", "--worker", "<img src=x onerror=alert(1)>", "--note", "<script>bad()</script>")
    pages = [board.get(p) for p in ("/", "/plan/web", "/plan/web/graph", "/plan/web/timeline",
                                    "/plan/web/task/T-2", "/plan/web/task/T-1", "/plan/web/review")]
    for html in pages:
        assert "<script>alert" not in html and "<script>bad" not in html
        assert "<img src=x" not in html and "<b>bold" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in pages[1]
    assert "&lt;script&gt;bad()&lt;/script&gt;" in pages[5]
    # the only scripts are the board's own file
    for html in pages:
        assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/board.js" defer>']


def test_graph_is_svg_with_one_node_per_task_and_the_critical_path(web: Repo, board: Board) -> None:
    html = board.get("/plan/web/graph")
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert len(re.findall(r'<g class="node task ', svg)) == 4
    assert len(re.findall(r'<g class="node gate ', svg)) == 1
    assert 'class="edge crit"' in svg
    crit = re.findall(r'<g class="node \w+ [^"]*crit" data-id="([^"]+)"', svg)
    assert crit[0] == "T-1" and "T-4" in crit
    # a state is a word as well as a colour
    assert re.search(r'data-id="T-1"[^>]*>.*?>● ready</text>', svg, re.S)


def test_big_plan_graph_node_count(repo: Repo) -> None:
    tasks = "\n".join(f"  - id: T-{i}\n    title: Task {i}\n" + (f"    depends_on: [T-{i // 2}]\n" if i else "")
                      for i in range(120))
    repo.plan("big", f"id: big\ntitle: Big\ntasks:\n{tasks}")
    b = Board(repo)
    try:
        svg = b.get("/plan/big/graph")
    finally:
        b.stop()
    assert len(re.findall(r'<g class="node task ', svg)) == 120
    assert svg.count('<path class="edge') == 119


def test_live_channel_sees_a_done_made_by_another_process(web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "w1")
    tags = board.live()
    first = next(tags)
    seen: list[tuple[str, float]] = []

    def follow() -> None:
        for tag in tags:
            seen.append((tag, time.monotonic()))
            return

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    proc = web.proc("done", "web/T-1", "--worker", "w1")
    assert proc.returncode == 0, proc.stderr
    finished = time.monotonic()
    reader.join(timeout=5)
    assert seen, "the live channel sent nothing after the done"
    tag, at = seen[0]
    assert tag != first
    assert at - finished < 1.0
    html = board.get("/plan/web")
    assert "T-1" in column_ids(html, "done")
    assert f'data-version="{tag}"' in html or board.get("/version")


def test_version_tag_changes_with_a_transition(web: Repo, board: Board) -> None:
    before = board.get("/version")
    web.ok("claim", "web/T-1", "--worker", "w1")
    time.sleep(0.15)  # the tag is shared by open pages for up to 0.1 s
    assert board.get("/version") != before


def test_requests_for_another_host_are_refused(board: Board) -> None:
    for host in (f"evil.example:{board.port}", f"127.0.0.1.nip.io:{board.port}", "127.0.0.1:1",
                 f"localhost.evil.example:{board.port}", ""):
        reply = board.request("/plan/web", host=host)
        assert reply.status == 403, host
        assert "Board test plan" not in reply.body
    assert board.request("/", host=f"localhost:{board.port}").status == 200
    assert board.request("/", host=f"LOCALHOST:{board.port}").status == 200


def test_path_like_ids_are_not_found(board: Board) -> None:
    for path in ("/plan/..%2F..%2Fetc%2Fpasswd", "/plan/web/task/..%2F..%2Fconfig",
                 "/plan/%2e%2e/graph", "/plan/web/task/.hidden", "/static/..%2Fserver.py",
                 "/static/board.py", "/plan/web/timeline?task=..%2Fx", "/plan/web/review?from=--all",
                 "/plan/web/review?checkpoint=..%2Fx", "/plan/nope", "/plan/web/task/T-99"):
        reply = board.request(path)
        assert reply.status == 404, path
        assert "Traceback" not in reply.body


def test_only_get_and_head_are_served(web: Repo, board: Board) -> None:
    head = web.git("rev-parse", "HEAD")
    status = web.ok("status", "web", "--json").json
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        reply = board.request("/plan/web", method=method, body=b"task=T-1&state=done")
        assert reply.status == 405, method
        assert reply.headers["allow"] == "GET, HEAD"
    reply = board.request("/plan/web", method="HEAD")
    assert reply.status == 200 and reply.body == ""
    assert web.git("rev-parse", "HEAD") == head
    assert web.ok("status", "web", "--json").json["counts"] == status["counts"]
    assert web.git("status", "--porcelain") == ""
    html = board.get("/plan/web")
    assert "<form" not in html.replace('<form class="filters" method="get"', "")


def test_pages_forbid_other_origins_and_inline_code(board: Board) -> None:
    reply = board.request("/plan/web")
    csp = reply.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["content-type"] == "text/html; charset=utf-8"
    for name in ("board.css", "board.js", "favicon.svg"):
        assert board.request(f"/static/{name}").status == 200
    # nothing on any page is fetched from another origin
    for path in ("/", "/plan/web", "/plan/web/graph"):
        assert not re.search(r'(src|href)="(https?:)?//', board.get(path))


def test_timeline_filters_by_task_and_actor(web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "alice")
    web.ok("done", "web/T-1", "--worker", "alice")
    web.ok("claim", "web/T-3", "--worker", "bob")
    html = board.get("/plan/web/timeline")
    rows = re.findall(r'<tr data-type="([^"]+)">', html)
    assert rows[0] == "task.claimed" and "task.done" in rows  # newest first
    assert re.search(r'<td class="sha"><code title="[0-9a-f]{40}">', html)  # each event's commit
    bob = board.get("/plan/web/timeline?actor=bob")
    assert re.findall(r'<tr data-type="([^"]+)">', bob) == ["task.claimed"]
    t1 = board.get("/plan/web/timeline?task=T-1")
    assert re.findall(r'<tr data-type="([^"]+)">', t1) == ["task.done", "task.claimed"]


def test_task_page_shows_notes_files_and_events(web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "w1")
    web.ok("done", "web/T-1", "--worker", "w1", "--note", "schema ready", "--files-modified", "db/schema.sql")
    html = board.get("/plan/web/task/T-1")
    assert "schema ready" in html and "db/schema.sql" in html
    assert "task.done" in html and "Needed by" in html
    assert "No prompt recorded" in html
    assert board.request("/plan/web/task/CP-1").status == 303


def test_review_shows_the_checkpoint_and_the_plan_diff(web: Repo, board: Board) -> None:
    for task in ("T-1", "T-2", "T-3"):
        web.ok("claim", f"web/{task}", "--worker", "w1")
        web.ok("done", f"web/{task}", "--worker", "w1", "--note", f"{task} <done>")
    web.ok("task", "add", "web", "T-5", "--title", "Added <later>", "--dep", "T-4")
    html = board.get("/plan/web/review")
    assert "Checkpoint review" in html and "T-2 &lt;done&gt;" in html
    diff = html[html.index("Plan diff"):]
    assert "flowgit plan diff" in diff
    assert "Added &lt;later&gt;" in diff and "<later>" not in diff
    assert '<g class="node task c-added"' in diff  # the comment's graph, drawn by flowgit
    versions = re.findall(r'<option value="([0-9a-f]{40})"', diff)
    assert len(versions) >= 2
    older = board.get(f"/plan/web/review?from={versions[-1]}&to={versions[0]}")
    assert "T-5" in older


def test_a_broken_plan_is_a_page_not_a_crash(web: Repo, board: Board) -> None:
    (web.path / ".flow/plans/web/plan.yaml").write_text("id: web\ntasks: [\n")
    reply = board.request("/plan/web")
    assert reply.status == 500 and "plan.yaml" in reply.body and "Traceback" not in reply.body
    assert board.request("/").status == 200


def test_a_host_other_than_loopback_is_warned_about(web: Repo) -> None:
    b = Board(web, "--host", "127.0.0.2")
    try:
        assert b.host == "127.0.0.2"
        assert b.request("/", host=f"127.0.0.2:{b.port}").status == 200
        assert b.request("/", host=f"evil.example:{b.port}").status == 403
    finally:
        err = b.stop()
    assert "warning: serving on 127.0.0.2" in err


def test_board_json_prints_the_url_as_one_object(web: Repo) -> None:
    import json
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "flowgit", "--repo", str(web.path), "board",
                             "--port", "0", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        data = json.loads(proc.stdout.readline())
        assert data["url"].startswith("http://127.0.0.1:") and data["port"] > 0
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_board_outside_a_flowgit_repository_says_so(tmp_path: object) -> None:
    from helpers import make_git_repo
    from pathlib import Path

    path = make_git_repo(Path(str(tmp_path)) / "plain")
    res = Repo(path).run("board", "--port", "0")
    assert res.code == 1 and "flowgit init" in res.err


def test_a_port_in_use_is_one_line(web: Repo) -> None:
    b = Board(web)
    try:
        res = web.run("board", "--port", str(b.port))
    finally:
        b.stop()
    assert res.code == 1
    assert f"port {b.port} on 127.0.0.1 is in use: pass --port N" in res.err
    assert "Traceback" not in res.err


def test_demo_board_leaves_the_board_running_on_the_demo(tmp_path: object) -> None:
    import http.client
    import subprocess
    import sys
    from pathlib import Path

    target = Path(str(tmp_path)) / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "flowgit", "demo", str(target), "--board", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = ""
        for line in proc.stdout:
            if line.startswith("== the board on the demo: "):
                url = line.split(": ", 1)[1].split()[0]
                break
        assert url.startswith("http://127.0.0.1:"), proc.stderr.read() if proc.stderr else ""
        host, port = url[len("http://"):].rstrip("/").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/plan/webhooks", headers={"Host": f"{host}:{port}"})
        res = conn.getresponse()
        html = res.read().decode()
        assert res.status == 200
        assert "complete" in html and column_counts(html)["done"] == 6
        assert proc.poll() is None  # still serving
    finally:
        proc.terminate()
        proc.communicate(timeout=20)


def test_the_board_reads_through_the_layers_below_the_cli() -> None:
    import ast
    from pathlib import Path

    from helpers import ROOT

    for path in sorted((ROOT / "flowgit" / "board").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in names:
                assert not name.startswith(("flowgit.cli", "flowgit.watcher", "flowgit.runner")), \
                    f"{Path(path).name} imports {name}"


def test_an_expired_lease_reaches_an_open_page_with_no_write(web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "w1", "--lease", "1.5")
    assert column_ids(board.get("/plan/web"), "running") == ["T-1"]  # the page notes the lease's end
    tags = board.live()
    first = next(tags)
    head = web.git("rev-parse", "HEAD")
    assert next(tags) != first  # the lease ran out: nothing was written, the tag moved anyway
    assert web.git("rev-parse", "HEAD") == head
    html = board.get("/plan/web")
    assert column_ids(html, "ready") == ["T-1"] and "lease expired" in html
