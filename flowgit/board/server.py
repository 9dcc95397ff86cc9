"""The board's HTTP server: the standard library's ThreadingHTTPServer, GET and HEAD only.

Safe by construction: every other method is refused (405); a request whose Host is not this
server's own name (127.0.0.1:PORT or localhost:PORT) is refused (403), so a page on another
site cannot read the board through DNS rebinding; ids in paths are checked before anything
is read; pages forbid inline scripts and styles and any other origin (CSP)."""
from __future__ import annotations

import errno
import ipaddress
import json
import re
import sys
import threading
import time
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from flowgit import git
from flowgit.board import pages
from flowgit.board.html import esc, page
from flowgit.board.live import Version
from flowgit.errors import FlowError, NotFound, UsageError
from flowgit.ids import is_valid_id
from flowgit.store.repo import FLOW, FlowRepo

LOOPBACK = ("127.0.0.1", "localhost")
LIVE_INTERVAL = 0.2   # seconds between looks at the version tag, per open page
LIVE_PING = 15.0      # a comment line this often finds closed connections
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml", ".png": "image/png"}
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; "
                                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; "
                                "form-action 'self'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


class EventCommits:
    """Which commit brought each event onto the branch (format 2: the state branch), read from
    `git log -p` once and then only for the commits since (per plan, keyed by the tip)."""

    def __init__(self) -> None:
        self._by_plan: dict[str, tuple[str | None, dict[str, str]]] = {}

    def get(self, repo: FlowRepo, plan_id: str) -> dict[str, str]:
        store = repo.state_store
        head = git.read_head(repo.dirs) if store is None else store.head()
        cached = self._by_plan.get(plan_id)
        if cached is not None and cached[0] == head:
            return cached[1]
        if head is None:
            return {}
        mapping: dict[str, str] = {}
        since = None
        if cached is not None and cached[0] and git.is_ancestor(repo.root, cached[0], head):
            mapping = dict(cached[1])
            since = cached[0]
        for commit, line in git.added_lines_by_commit(repo.root, head, since,
                                                      f"{FLOW}/plans/{plan_id}/events"):
            try:
                ident = json.loads(line).get("id")
            except (ValueError, AttributeError):
                continue
            if isinstance(ident, str):
                mapping.setdefault(ident, commit)
        self._by_plan[plan_id] = (head, mapping)
        return mapping


class BoardServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        probe = FlowRepo(root)
        probe.require_init()
        self.root = probe.root
        self.dirs = probe.dirs
        self.version = Version(probe.dirs, probe.flow)
        self.read_lock = threading.Lock()
        self.stopping = threading.Event()
        self.commits = EventCommits()
        self.host = host
        super().__init__((host, port), Handler)
        self.port = int(self.server_address[1])
        self.allowed = {f"{name}:{self.port}" for name in (*LOOPBACK, host)}
        self.any_ip = _wildcard(host)

    @property
    def url(self) -> str:
        host = self.host if self.host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/"

    def host_allowed(self, header: str | None) -> bool:
        if not header:
            return False
        header = header.strip().lower()
        if header in self.allowed:
            return True
        if self.any_ip:  # bound to every interface: an address (never a name) may be used
            name, _, port = header.rpartition(":")
            if port == str(self.port):
                try:
                    ipaddress.ip_address(name.strip("[]"))
                    return True
                except ValueError:
                    return False
        return False

    def shutdown(self) -> None:
        self.stopping.set()
        super().shutdown()


def _wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def serve(root: Path, host: str, port: int, on_ready: Callable[[BoardServer], None]) -> int:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    import signal

    try:
        server = BoardServer(root, host, port)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise FlowError(f"port {port} on {host} is in use: pass --port N (0 picks a free one)") from None
        raise FlowError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    stop = threading.Event()

    def on_term(_sig: int, _frame: Any) -> None:
        stop.set()
    previous = signal.signal(signal.SIGTERM, on_term) if threading.current_thread() is threading.main_thread() else None
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    thread.start()
    try:
        on_ready(server)
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


class Handler(BaseHTTPRequestHandler):
    server: BoardServer
    server_version = "flowgit-board"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # quiet: pages are many
        return

    # ----- methods: read-only ------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802  (the standard library's name)
        self._handle(body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle(body=False)

    def _refuse_method(self) -> None:
        self._send(405, "text/plain; charset=utf-8",
                   b"flowgit board is read-only: only GET and HEAD are served\n",
                   extra={"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse_method  # noqa: N815

    # ----- dispatch ----------------------------------------------------------------------------
    def _handle(self, body: bool) -> None:
        self._body = body
        if not self.server.host_allowed(self.headers.get("Host")):
            self._send(403, "text/plain; charset=utf-8",
                       b"refused: this board answers only to 127.0.0.1:PORT or localhost:PORT "
                       b"(a request for another host name could come from another site)\n")
            return
        url = urlsplit(self.path)
        raw = url.path.split("/")[1:]
        parts = [unquote(p) for p in raw]
        if parts and parts[-1] == "" and len(parts) > 1:
            parts = parts[:-1]
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            self._route(parts, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, parts: list[str], query: dict[str, str]) -> None:
        if parts in ([], [""]):
            self._page(lambda ctx: pages.plans_page(ctx))
        elif parts[0] == "static" and len(parts) == 2:
            self._static(parts[1])
        elif parts == ["live"]:
            self._live()
        elif parts == ["version"]:
            data = json.dumps({"version": self.server.version.tag()}).encode()
            self._send(200, "application/json", data)
        elif parts[0] == "plan" and len(parts) >= 2:
            self._plan(parts[1:], query)
        else:
            self._not_found("no such page")

    def _plan(self, parts: list[str], query: dict[str, str]) -> None:
        if not all(is_valid_id(p) for p in parts):
            self._not_found("not a valid id: ids are letters, digits, '.', '_' and '-'")
            return
        plan_id = parts[0]
        rest = parts[1:]

        def opt_id(name: str) -> str | None:
            value = query.get(name) or None
            if value is not None and not is_valid_id(value):
                raise UsageError(f"invalid {name} {value!r}")
            return value

        try:
            if not rest:
                self._page(lambda ctx: pages.board_page(ctx, plan_id))
            elif rest == ["graph"]:
                self._page(lambda ctx: pages.graph_page(ctx, plan_id))
            elif rest == ["timeline"]:
                task = opt_id("task")
                actor = (query.get("actor") or None)
                actor = actor[:200] if actor else None
                self._page(lambda ctx: pages.timeline_page(ctx, plan_id, task, actor))
            elif rest == ["review"]:
                cp = opt_id("checkpoint")
                revs = [query.get("from") or None, query.get("to") or None]
                for rev in revs:
                    if rev is not None and rev != "worktree" and not _SHA.fullmatch(rev):
                        raise UsageError(f"invalid revision {rev!r}: pick a version from the list")
                self._page(lambda ctx: pages.review_page(ctx, plan_id, cp, revs[0], revs[1]))
            elif len(rest) == 2 and rest[0] == "task":
                self._page(lambda ctx: pages.task_page(ctx, plan_id, rest[1]))
            else:
                self._not_found("no such page")
        except UsageError as exc:
            self._not_found(exc.message)

    # ----- responses ---------------------------------------------------------------------------
    def _page(self, render: Callable[[pages.Ctx], str]) -> None:
        server = self.server
        tag = server.version.tag()  # before reading: a page is never newer than its tag says
        status = 200
        with server.read_lock:
            repo = FlowRepo(server.root)
            ctx = pages.Ctx(repo, tag, deadlines=server.version.note_deadlines,
                            commits=server.commits.get)
            try:
                text = render(ctx)
            except pages.Redirect as exc:
                self._send(303, "text/plain; charset=utf-8", b"", extra={"Location": exc.location})
                return
            except (NotFound, UsageError) as exc:
                status, text = 404, _error_page("Not found", exc.message, tag)
            except FlowError as exc:
                status, text = 500, _error_page("The repository cannot be read", exc.message, tag)
            except Exception:  # a bug: the page says so, the terminal shows the traceback
                traceback.print_exc(file=sys.stderr)
                status, text = 500, _error_page("Internal error", "see the terminal running "
                                                "`flowgit board`", tag)
            finally:
                try:
                    repo.save_cache()
                except FlowError:
                    pass
        self._send(status, "text/html; charset=utf-8", text.encode("utf-8"))

    def _not_found(self, message: str) -> None:
        self._send(404, "text/html; charset=utf-8",
                   _error_page("Not found", message, self.server.version.tag()).encode("utf-8"))

    def _static(self, name: str) -> None:
        folder = files("flowgit.board") / "static"
        suffix = name[name.rfind("."):] if "." in name else ""
        if not re.fullmatch(r"[a-z0-9][a-z0-9_.-]*", name) or ".." in name or suffix not in STATIC_TYPES:
            self._not_found("no such file")
            return
        item = folder / name
        if not item.is_file():
            self._not_found("no such file")
            return
        self._send(200, STATIC_TYPES[suffix], item.read_bytes(), extra={"Cache-Control": "no-cache"})

    def _send(self, status: int, ctype: str, data: bytes, extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {**SECURITY_HEADERS, **(extra or {})}
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if getattr(self, "_body", True) and data:
            self.wfile.write(data)

    def _live(self) -> None:
        """Server-sent events: the version tag whenever it changes."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        for key, value in SECURITY_HEADERS.items():
            self.send_header(key, value)
        self.end_headers()
        if not self._body:
            return
        server = self.server
        last = ""
        pinged = time.monotonic()
        self.wfile.write(b"retry: 1000\n\n")
        while not server.stopping.is_set():
            tag = server.version.tag()
            if tag != last:
                self.wfile.write(f"event: version\ndata: {tag}\n\n".encode())
                self.wfile.flush()
                last = tag
                pinged = time.monotonic()
            elif time.monotonic() - pinged > LIVE_PING:
                self.wfile.write(b": ping\n\n")
                self.wfile.flush()
                pinged = time.monotonic()
            server.stopping.wait(LIVE_INTERVAL)


def _error_page(title: str, message: str, version: str) -> str:
    body = (f'<section class="empty"><h1>{esc(title)}</h1><p class="error">{esc(message)}</p>'
            '<p><a href="/">All plans</a></p></section>')
    return page(title, body, version=version)
