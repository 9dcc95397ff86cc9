"""Make the README's pictures of `flowgit board`: the demo plan (the built-in webhook example)
caught mid-run in a fresh repository, its board and its graph, in headless Chromium.

    python docs/screenshot.py                 # writes docs/board.png and docs/board-graph.png
    python docs/screenshot.py --keep          # and keeps the repository and the board running
                                              # until Enter, to look around

Needs the `[board-test]` extra (Playwright for Python) and a Chromium on the machine
(Debian: `apt-get install chromium`; the path is taken from $FLOWGIT_CHROMIUM, else
/usr/bin/chromium). Nothing is downloaded.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium() -> str:
    return os.environ.get("FLOWGIT_CHROMIUM", "/usr/bin/chromium")


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "FLOWGIT_"))}
    env.update({"HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": str(home / "gitconfig"),
                "GIT_AUTHOR_NAME": "Demo", "GIT_AUTHOR_EMAIL": "demo@flowgit.invalid",
                "GIT_COMMITTER_NAME": "Demo", "GIT_COMMITTER_EMAIL": "demo@flowgit.invalid",
                "PYTHONPATH": str(ROOT)})
    (home / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    return env


def build_repo(base: Path) -> tuple[Path, dict[str, str]]:
    """The demo plan mid-run: three tasks done, one in progress, one waiting to retry after a
    failed delivery test, the last waiting on them, the checkpoint gate closed."""
    home = base / "home"
    home.mkdir()
    env = _env(home)
    repo = base / "webhooks-service"
    repo.mkdir()

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)

    def fg(*args: str, actor: str = "alice@example.com") -> None:
        proc = subprocess.run([sys.executable, "-m", "flowgit", "--repo", str(repo), *args],
                              env={**env, "FLOWGIT_ACTOR": actor}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"flowgit {' '.join(args)}: {proc.stderr or proc.stdout}")

    git("init", "-q")
    (repo / "README.md").write_text("# webhook service\n")
    git("add", "README.md")
    git("commit", "-q", "-m", "initial commit")
    fg("init")
    config = repo / ".flow" / "config.yaml"
    config.write_text(config.read_text().replace("  required: 0 ", "  required: 1 "))
    git("commit", "-q", "--no-verify", "-m", "flow: require one plan approval", "--", ".flow/config.yaml")
    plan = (ROOT / "flowgit" / "examples" / "webhooks.yaml").read_text()
    plan = plan.replace("  base: 1\n  cap: 16\n", "  base: 90\n  cap: 600\n")  # a visible retry wait
    source = base / "webhooks.yaml"
    source.write_text(plan)
    fg("plan", "new", "webhooks", "--from", str(source))
    fg("submit", "webhooks")
    fg("approve", "webhooks", "--reviewer", "alice", "--comment", "looks right")
    notes = {"T-WH-01": "tables and the pending-deliveries index",
             "T-WH-02": "CRUD + pending query, 14 tests",
             "T-WH-03": "pool of 8, 5 per endpoint"}
    for task, who in (("T-WH-01", "agent-1"), ("T-WH-02", "agent-2"), ("T-WH-03", "agent-1")):
        fg("claim", f"webhooks/{task}", "--worker", who, actor=who)
        fg("start", f"webhooks/{task}", "--worker", who, actor=who)
        fg("done", f"webhooks/{task}", "--worker", who, "--note", notes[task], actor=who)
    fg("claim", "webhooks/T-WH-04", "--worker", "agent-2", actor="agent-2")
    fg("start", "webhooks/T-WH-04", "--worker", "agent-2", actor="agent-2")
    fg("claim", "webhooks/T-WH-05", "--worker", "agent-3", actor="agent-3")
    fg("fail", "webhooks/T-WH-05", "--worker", "agent-3", "--retry",
       "--error", "integration: connection refused on :8089", actor="agent-3")
    return repo, env


def start_board(repo: Path, env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "flowgit", "--repo", str(repo), "board", "--port", "0"],
                            env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    url = proc.stdout.readline().strip()
    if not url.startswith("http://"):
        proc.kill()
        raise SystemExit(f"flowgit board did not start: {url!r}")
    return proc, url


def shoot(url: str, out: Path, width: int, height: int) -> Any:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
        page.goto(url + "plan/webhooks")
        page.wait_for_selector(".columns")
        page.screenshot(path=str(out / "board.png"))
        page.goto(url + "plan/webhooks/graph")
        page.wait_for_selector("svg.graph")
        page.click("[data-zoom=fit]")
        page.screenshot(path=str(out / "board-graph.png"))
        browser.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE, help="where the PNGs go (default: docs/)")
    p.add_argument("--width", type=int, default=1440)
    p.add_argument("--height", type=int, default=860)
    p.add_argument("--keep", action="store_true", help="keep the board running until Enter")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="flowgit-shot-") as tmp:
        repo, env = build_repo(Path(tmp))
        proc, url = start_board(repo, env)
        try:
            time.sleep(0.2)
            shoot(url, args.out, args.width, args.height)
            print(f"wrote {args.out / 'board.png'} and {args.out / 'board-graph.png'}")
            if args.keep:
                input(f"board at {url} on {repo}; Enter stops it ")
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
