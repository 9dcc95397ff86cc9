"""Issue 16 speed: `flowgit board` on a 2,000-task plan with 20,000 events.

Measures, from an HTTP client beside a real `flowgit board` process:
  - the board page and the graph page: the first request after start (no derived cache on
    disk) and the median of warm requests (the cache is on disk then, as after any command),
  - the plans page, the timeline (first, then warm) and a task page,
  - the live path: a `flowgit done` made by another process, until the live channel announces
    it and until the board page re-fetched then shows the task done (what an open page does),
and prints each page's size.

Run: python bench/bench_board.py [--quick] [--json FILE] [--keep]
"""
from __future__ import annotations

import http.client
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (  # noqa: E402
    PLAN,
    Row,
    Workspace,
    base_parser,
    drop_cache,
    loadavg,
    machine,
    median,
    ms,
    print_table,
    progress,
    task_id,
    write_json,
    write_plan,
)

BIG = (2000, 20000)
CHECKPOINTS = 3
TARGET_PAGE = 1.0
TARGET_LIVE = 1.0


class Client:
    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def get(self, path: str) -> tuple[float, int, bytes]:
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=60)
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{self.port}"})
        res = conn.getresponse()
        body = res.read()
        conn.close()
        return time.perf_counter() - t0, res.status, body


def run(quick: bool = False, keep: bool = False, json_out: str | None = None) -> list[Row]:
    n = 5 if quick else 15
    rows: list[Row] = []
    extra: dict[str, object] = {}
    with Workspace(keep=keep) as ws:
        r = ws.new_repo("repo")
        progress(f"writing a {BIG[0]}-task plan with {BIG[1]} events")
        write_plan(r, BIG[0], BIG[1], checkpoints=CHECKPOINTS)
        drop_cache(r)
        print(f"\n{machine()}\nload before: {loadavg()}", flush=True)
        proc = subprocess.Popen([*r.flowgit, "board", "--port", "0"], cwd=r.repo, env=r.env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            url = proc.stdout.readline().strip()
            if not url.startswith("http://"):
                raise RuntimeError(f"flowgit board did not start: {url!r}")
            c = Client(url)
            board, graph = f"/plan/{PLAN}", f"/plan/{PLAN}/graph"
            first_board = c.get(board)
            first_graph = c.get(graph)
            assert first_board[1] == 200 and first_graph[1] == 200
            progress("warm requests")
            warm_board = [c.get(board)[0] for _ in range(n)]
            warm_graph = [c.get(graph)[0] for _ in range(n)]
            nodes = len(re.findall(rb'<g class="node task ', first_graph[2]))
            rows += [
                Row("board page, first request (no cache)", ms(first_board[0]), f"<= {TARGET_PAGE:g} s",
                    first_board[0] <= TARGET_PAGE),
                Row("board page, warm (median)", f"{ms(median(warm_board))} (min {ms(min(warm_board))})",
                    f"<= {TARGET_PAGE:g} s", median(warm_board) <= TARGET_PAGE),
                Row("graph page, first request", ms(first_graph[0]), f"<= {TARGET_PAGE:g} s",
                    first_graph[0] <= TARGET_PAGE),
                Row("graph page, warm (median)", f"{ms(median(warm_graph))} (min {ms(min(warm_graph))})",
                    f"<= {TARGET_PAGE:g} s", median(warm_graph) <= TARGET_PAGE),
                Row("graph: task nodes in the SVG", str(nodes), str(BIG[0]), nodes == BIG[0]),
            ]
            plans = [c.get("/")[0] for _ in range(3)]
            timeline_first = c.get(f"/plan/{PLAN}/timeline")
            timeline = [c.get(f"/plan/{PLAN}/timeline")[0] for _ in range(3)]
            task = [c.get(f"/plan/{PLAN}/task/{task_id(5)}")[0] for _ in range(3)]
            rows += [
                Row("plans page (median of 3)", ms(median(plans))),
                Row("timeline, first (each event's commit from git log)", ms(timeline_first[0])),
                Row("timeline, warm (median of 3)", ms(median(timeline))),
                Row("task page (median of 3)", ms(median(task))),
            ]
            extra["sizes"] = {"board": len(first_board[2]), "graph": len(first_graph[2]),
                              "timeline": len(timeline_first[2])}
            rows.append(Row("page sizes", f"board {len(first_board[2]) // 1024} KiB, graph "
                            f"{len(first_graph[2]) // 1024} KiB, timeline {len(timeline_first[2]) // 1024} KiB"))
            # live: a done by another process, as an open page sees it
            progress("live: done by another process")
            lat_event: list[float] = []
            lat_page: list[float] = []
            ready = re.findall(r'data-column="ready".*?data-column="retry"', first_board[2].decode(), re.S)
            candidates = re.findall(r'data-id="(T-\d+)"', ready[0]) if ready else []
            for tid in candidates[: (2 if quick else 5)]:
                r.fg("claim", f"{PLAN}/{tid}", "--worker", "bench")
                time.sleep(0.5)
                seen = threading.Event()
                at: list[float] = []
                stream = http.client.HTTPConnection(c.host, c.port, timeout=30)
                stream.request("GET", "/live", headers={"Host": f"127.0.0.1:{c.port}"})
                res = stream.getresponse()
                res.fp.readline()
                first = None
                while first is None:
                    line = res.fp.readline()
                    if line.startswith(b"data: "):
                        first = line

                def follow() -> None:
                    while True:
                        line = res.fp.readline()
                        if not line:
                            return
                        if line.startswith(b"data: ") and line != first:
                            at.append(time.perf_counter())
                            seen.set()
                            return
                reader = threading.Thread(target=follow, daemon=True)
                reader.start()
                r.fg("done", f"{PLAN}/{tid}", "--worker", "bench")
                t_done = time.perf_counter()
                seen.wait(10)
                stream.close()
                if not at:
                    continue
                _, _, body = c.get(board)
                t_page = time.perf_counter()
                html = body.decode()
                done_col = html[html.index('data-column="done"'):html.index('data-column="stopped"')]
                if f'data-id="{tid}"' in done_col:
                    lat_event.append(at[0] - t_done)
                    lat_page.append(t_page - t_done)
            rows += [
                Row("live: done -> event on the channel (median)", ms(median(lat_event)), "",
                    None),
                Row("live: done -> board re-fetched showing it (median)", ms(median(lat_page)),
                    f"<= {TARGET_LIVE:g} s", bool(lat_page) and median(lat_page) <= TARGET_LIVE),
            ]
            extra["samples"] = {"board": warm_board, "graph": warm_graph, "live_event": lat_event,
                                "live_page": lat_page}
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        print(f"load after: {loadavg()}", flush=True)
    print_table(f"board: {BIG[0]} tasks, {BIG[1]} events", rows)
    write_json(json_out, "board", rows, extra)
    return rows


def main() -> int:
    args = base_parser(__doc__).parse_args()
    rows = run(args.quick, args.keep, args.json_out)
    return 1 if args.strict and any(r.ok is False for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
