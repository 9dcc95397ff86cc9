"""`flowgit board` in a real browser: headless Chromium driven by Playwright for Python, checking
what a person sees. Needs the `[board-test]` extra and the system Chromium (Debian:
`apt-get install chromium`; another path through $FLOWGIT_CHROMIUM). Without them these tests
skip, except where FLOWGIT_REQUIRE_BROWSER=1 (set by .ci/run): there a skip is a failure."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from helpers.board import PLAN, Board
from helpers import Repo

CHROMIUM = os.environ.get("FLOWGIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _unavailable() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed: pip install '.[board-test]'"
    if not Path(CHROMIUM).exists():
        return f"no Chromium at {CHROMIUM}: apt-get install chromium (or set FLOWGIT_CHROMIUM)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    reason = _unavailable()
    if reason:
        if os.environ.get("FLOWGIT_REQUIRE_BROWSER") == "1":
            pytest.fail(f"browser tests are required here (FLOWGIT_REQUIRE_BROWSER=1): {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watched:
    """A page with what went wrong on it: script errors, console errors (CSP reports there),
    dialogs (an alert() would mean a value ran as script), requests to anywhere else."""

    def __init__(self, browser: Any, board: Board) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.elsewhere: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda msg: msg.type == "error" and self.errors.append(msg.text))
        self.page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        self.page.on("request", lambda req: None if req.url.startswith(board.url)
                     else self.elsewhere.append(req.url))

    def clean(self) -> None:
        assert self.errors == [] and self.dialogs == [] and self.elsewhere == []


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


def _count(page: Any, column: str) -> str:
    return str(page.locator(f'[data-column="{column}"] h2 .count').inner_text())


def test_columns_and_their_counts(browser: Any, web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "w1")
    web.ok("done", "web/T-1", "--worker", "w1")
    web.ok("claim", "web/T-3", "--worker", "agent-7")
    w = Watched(browser, board)
    page = w.page
    page.goto(board.url + "plan/web")
    headings = page.locator(".col h2 > span:first-child").all_inner_texts()
    assert [h.strip().lower() for h in headings] == [
        "waiting", "ready", "claimed / in progress", "retry wait", "done", "failed / blocked / skipped"]
    assert [_count(page, c) for c in ("waiting", "ready", "running", "retry", "done", "stopped")] == \
        ["1", "1", "1", "0", "1", "0"]
    running = page.locator('[data-column="running"] .card')
    assert running.count() == 1
    text = running.inner_text()
    assert "T-3" in text and "agent-7" in text and "left on lease" in text and "in progress" not in text
    assert "claimed" in text  # the state in words, not only as a colour
    gate = page.locator('.gate[data-id="CP-1"]')
    assert gate.is_visible() and "gate closed" in gate.inner_text()
    # the filter narrows the cards as one types
    page.fill("#card-filter", "agent-7")
    assert page.locator(".card:visible").count() == 1
    w.clean()


def test_graph_has_one_node_per_task_and_zooms(browser: Any, web: Repo, board: Board) -> None:
    w = Watched(browser, board)
    page = w.page
    page.goto(board.url + "plan/web/graph")
    assert page.locator("svg.graph g.node.task").count() == 4
    assert page.locator("svg.graph g.node.gate").count() == 1
    assert page.locator("svg.graph .edge.crit").count() >= 2
    node = page.locator('svg.graph g.node[data-id="T-1"]')
    assert "ready" in (node.text_content() or "")
    svg = page.locator("svg.graph")
    before = svg.get_attribute("viewBox")
    page.click("[data-zoom=in]")
    zoomed = svg.get_attribute("viewBox")
    assert zoomed != before
    box = page.locator(".graphwrap").bounding_box()
    page.mouse.move(box["x"] + 200, box["y"] + 200)
    page.mouse.down()
    page.mouse.move(box["x"] + 320, box["y"] + 260, steps=5)
    page.mouse.up()
    assert svg.get_attribute("viewBox") != zoomed  # panned
    w.clean()


def test_a_title_with_markup_is_shown_as_text(browser: Any, web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "w1")
    web.ok("done", "web/T-1", "--worker", "w1", "--note", "<img src=x onerror=alert(2)>")
    w = Watched(browser, board)
    page = w.page
    title = "<script>alert('x')</script> & <b>bold</b>"
    for path in ("plan/web", "plan/web/graph", "plan/web/task/T-2", "plan/web/task/T-1"):
        page.goto(board.url + path)
        assert page.evaluate("document.querySelectorAll('main script, main img, main b').length") == 0
    page.goto(board.url + "plan/web")
    card = page.locator('.card[data-id="T-2"] .title')
    assert card.inner_text() == title
    page.goto(board.url + "plan/web/task/T-1")
    assert page.get_by_text("<img src=x onerror=alert(2)>", exact=True).is_visible()
    w.clean()


def test_a_done_by_another_process_shows_within_a_second(browser: Any, web: Repo, board: Board) -> None:
    web.ok("claim", "web/T-1", "--worker", "w1")
    w = Watched(browser, board)
    page = w.page
    page.goto(board.url + "plan/web")
    page.wait_for_selector("#live.on")
    assert _count(page, "done") == "0"
    proc = web.proc("done", "web/T-1", "--worker", "w1", "--note", "from elsewhere")
    assert proc.returncode == 0, proc.stderr
    finished = time.monotonic()
    page.wait_for_selector('[data-column="done"] .card[data-id="T-1"]', timeout=5000)
    elapsed = time.monotonic() - finished
    assert elapsed < 1.0, f"the done showed after {elapsed:.2f}s"
    assert _count(page, "done") == "1"
    assert _count(page, "ready") == "2"  # T-2 and T-3 became ready with it
    # the graph page follows too, and keeps its zoom
    page.goto(board.url + "plan/web/graph")
    page.wait_for_selector("#live.on")
    page.click("[data-zoom=in]")
    view = page.locator("svg.graph").get_attribute("viewBox")
    web.ok("claim", "web/T-3", "--worker", "w2")
    page.wait_for_selector('svg.graph g.node.s-claimed[data-id="T-3"]', timeout=5000)
    assert page.locator("svg.graph").get_attribute("viewBox") == view
    w.clean()


def test_plans_page_and_navigation(browser: Any, web: Repo, board: Board) -> None:
    w = Watched(browser, board)
    page = w.page
    page.goto(board.url)
    row = page.locator('tr[data-plan="web"]')
    assert "Board test plan" in row.inner_text() and "execute" in row.inner_text().lower()
    page.click('tr[data-plan="web"] a.pid')
    page.wait_for_selector(".columns")
    for tab, marker in (("Graph", "svg.graph"), ("Timeline", "table.events"), ("Review", ".plandiff")):
        page.click(f'nav.tabs a:text-is("{tab}")')
        page.wait_for_selector(marker)
    w.clean()
