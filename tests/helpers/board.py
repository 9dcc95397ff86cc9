"""Helpers for the board's tests: a real `flowgit board` process and plain HTTP requests."""
from __future__ import annotations

import http.client
import re
import subprocess
import sys
from dataclasses import dataclass
from typing import Iterator
from urllib.parse import urlsplit

from helpers.repo import Repo

PLAN = """\
id: web
title: Board test plan
goal: Show the board
tasks:
  - id: T-1
    title: First task
  - id: T-2
    title: "<script>alert('x')</script> & <b>bold</b>"
    depends_on: [T-1]
  - id: T-3
    title: Third task
    depends_on: [T-1]
  - id: T-4
    title: Last task
    depends_on: [T-2, T-3, CP-1]
checkpoints:
  - id: CP-1
    title: Gate before the last task
    after: [T-2, T-3]
"""


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: str


class Board:
    """`flowgit board --port 0` on a repository, as its own process."""

    def __init__(self, repo: Repo, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flowgit", "--repo", str(repo.path), "board", "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        assert self.url.startswith("http://"), self.url + (self.proc.stderr.read() if self.proc.stderr else "")
        parts = urlsplit(self.url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 80

    def request(self, path: str, method: str = "GET", host: str | None = None,
                body: bytes | None = None, timeout: float = 10.0) -> Reply:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            if host != "":
                conn.putheader("Host", host or f"127.0.0.1:{self.port}")
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            res = conn.getresponse()
            return Reply(res.status, {k.lower(): v for k, v in res.getheaders()},
                         res.read().decode("utf-8", "replace"))
        finally:
            conn.close()

    def get(self, path: str) -> str:
        reply = self.request(path)
        assert reply.status == 200, (path, reply.status, reply.body[:500])
        return reply.body

    def live(self, timeout: float = 10.0) -> Iterator[str]:
        """The version tags the live channel sends, as they come."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        conn.request("GET", "/live", headers={"Host": f"127.0.0.1:{self.port}"})
        res = conn.getresponse()
        assert res.status == 200
        assert res.getheader("Content-Type", "").startswith("text/event-stream")
        try:
            while True:
                line = res.fp.readline()
                if not line:
                    return
                if line.startswith(b"data: "):
                    yield line[6:].decode().strip()
        finally:
            conn.close()

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return err


def column_counts(html: str) -> dict[str, int]:
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'data-column="([a-z]+)".*?data-count="(\d+)"', html, re.S)}


def column_ids(html: str, column: str) -> list[str]:
    start = html.index(f'data-column="{column}"')
    end = html.find("data-column=", start + 10)
    return re.findall(r'<li class="card [^"]*" data-id="([^"]+)"', html[start:end if end != -1 else None])
