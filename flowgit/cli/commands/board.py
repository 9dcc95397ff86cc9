"""`flowgit board`: serve the read-only live board (flowgit.board) until Ctrl-C."""
from __future__ import annotations

import threading
from pathlib import Path

from flowgit.cli.app import App

LOOPBACK = ("127.0.0.1", "localhost")


def board(app: App, port: int, host: str, open_browser: bool) -> int:
    app.repo.require_init()
    return serve_board(app, app.repo.root, port, host, open_browser)


def serve_board(app: App, root: Path, port: int, host: str, open_browser: bool) -> int:
    from flowgit.board.server import BoardServer, serve

    if host not in LOOPBACK:
        app.out.warn(f"serving on {host}: anyone who can reach it can read the board (plans, notes, "
                     "prompts, run logs); it answers only to that address or the loopback names")

    def ready(server: BoardServer) -> None:
        app.out.result({"url": server.url, "host": server.host, "port": server.port}, server.url)
        if not app.out.as_json:
            app.out.info("read-only and live; Ctrl-C stops it")
        if open_browser:
            import webbrowser

            threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()

    return serve(root, "127.0.0.1" if host == "localhost" else host, port, ready)
