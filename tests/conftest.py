"""Shared fixtures: real git repositories in tmp dirs, pinned identities, and a guard that
keeps tests away from the developer's own repository and home. Helpers that tests import live
in tests/helpers/, not here."""
from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Iterator

import pytest
import helpers.repo
from helpers import BIN, TEST_FORMAT, Repo, Watcher, init_repo, isolate_env
from helpers import procs
from helpers.clock import WallClock

# A shell without job control starts a background job with SIGINT ignored, and an ignored signal
# stays ignored across exec: the processes the tests Ctrl-C (`watch`, `board`) would never hear it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _isolate(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    isolate_env(monkeypatch, tmp_path_factory.mktemp("home"))


@pytest.fixture(scope="session", autouse=True)
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Where `init_repo` keeps the repositories it initialises once per session and copies."""
    helpers.repo.TEMPLATE_ROOT = tmp_path_factory.mktemp("templates")
    yield
    helpers.repo.TEMPLATE_ROOT = None
    helpers.repo._templates.clear()


# FLOWGIT_TEST_FORMAT=2 runs the tests that use `repo` over format 2's storage (the state branch,
# ADR 0011) instead of format 1's; tests whose assertions are about format 1's storage itself are
# marked `format1` and skipped then. The default stays 1: CI runs format 2 through a slice
# (tests/test_format2_sweep.py) and tests/test_state_branch.py's fixtures.


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if TEST_FORMAT != "1":
        skip = pytest.mark.skip(reason="asserts on format 1's storage (FLOWGIT_TEST_FORMAT=2)")
        for item in items:
            if item.get_closest_marker("format1") is not None:
                item.add_marker(skip)


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    return init_repo(tmp_path / "repo", TEST_FORMAT)  # format 1 unless FLOWGIT_TEST_FORMAT says otherwise


@pytest.fixture
def venv_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """flowgit's git hook and the watcher processes call `flowgit`: this venv's, first on PATH."""
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))


@pytest.fixture
def watchers() -> Iterator[list[Watcher]]:
    """The watcher processes a test starts; whatever is still running after it is killed."""
    started: list[Watcher] = []
    procs.LIVE[:] = []
    yield started
    for w in [*started, *procs.LIVE]:
        w.kill()
    procs.LIVE[:] = []


@pytest.fixture
def wall_clock(monkeypatch: pytest.MonkeyPatch) -> WallClock:
    """flowgit's wall clock, moved by the test instead of sleeping (leases, retries, schedules)."""
    return WallClock(monkeypatch)
