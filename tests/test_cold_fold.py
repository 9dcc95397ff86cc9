"""The common log's fast fold (core/logfold.common_row, issue 17's cold `status`): a log of a
claim, then maybe a done, by one worker, is folded from its bytes without building events;
anything that differs from that shape in any byte is folded the general way, with the same
answer as the general fold."""
from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest

from flowgit.core.logfold import common_row, fold_task_log

PLAN, TASK, ACTOR = "big", "T-00836", "bench@example.com"
CLAIM = ('{"id":"01KDVEHW2053AFK44VSG2YH3H4","type":"task.claimed","plan":"big","task":"T-00836",'
         '"actor":"bench@example.com","at":"2026-01-01T00:15:36.000000Z","clock":1,"data":{'
         '"lease_until":"2026-01-01T00:30:36.000000Z","lease_seconds":900.0,'
         '"code":"51f263e4f1aa9b7ee8ccea6b1ba1e35f632abddb"}}\n')
DONE = ('{"id":"01KDVEHWHM1BC38M1ARQF0TWPW","type":"task.done","plan":"big","task":"T-00836",'
        '"actor":"bench@example.com","at":"2026-01-01T00:15:36.500000Z","clock":2,"data":{'
        '"code":"51f263e4f1aa9b7ee8ccea6b1ba1e35f632abddb"}}\n')


def general(data: bytes, plan: str = PLAN, task: str = TASK) -> tuple[object, ...] | None:
    """The general fold's row, or None when reading the log found a refused line (a held
    task: never a common log)."""
    rec, read = fold_task_log(data, plan, task, lambda p, t: f"{p}/{t}")
    return None if read.bad else rec.to_row()


def agree(data: bytes, plan: str = PLAN, task: str = TASK) -> tuple[object, ...] | None:
    fast = common_row(data, plan, task)
    if fast is not None:
        assert fast == general(data, plan, task)
    return fast


def test_the_common_logs_take_the_fast_path() -> None:
    done = agree((CLAIM + DONE).encode())
    assert done is not None and done[0] == "done" and done[-1] == "51f263e4f1aa9b7ee8ccea6b1ba1e35f632abddb"
    claimed = agree(CLAIM.encode())
    assert claimed is not None and claimed[0] == "claimed" and claimed[2] is not None
    # as `claim` writes it (no code, a whole number of seconds) and a done naming nothing
    plain = CLAIM.replace(',"code":"51f263e4f1aa9b7ee8ccea6b1ba1e35f632abddb"', "").replace("900.0", "900")
    bare = DONE.replace('"code":"51f263e4f1aa9b7ee8ccea6b1ba1e35f632abddb"', "")
    row = agree((plain + bare).encode())
    assert row is not None and row[-1] is None


@pytest.mark.parametrize("data", [
    CLAIM + DONE.replace('"clock":2', '"clock":1'),                       # same clock: ordered by id
    CLAIM.replace('"clock":1', '"clock":3') + DONE,                       # the done sorts first
    CLAIM + DONE.replace("01KDVEHWHM1BC38M1ARQF0TWPW", "01KDVEHW2053AFK44VSG2YH3H4"),  # a repeated id
    CLAIM + DONE.replace('"actor":"bench@example.com"', '"actor":"other@example.com"'),
    CLAIM + DONE.replace('"task":"T-00836"', '"task":"T-00837"'),         # a line of another task
    CLAIM + DONE.replace('"plan":"big"', '"plan":"small"'),
    CLAIM.replace('"task":"T-00836"', '"task":"T-00837"'),
    (CLAIM + DONE).replace("\n", "\r\n"),                                 # CRLF
    CLAIM + DONE[:-1],                                                    # torn last line
    CLAIM + DONE[:80],                                                    # truncated
    CLAIM[:-1] + " \n" + DONE,                                            # a space after the line
    CLAIM + "\n" + DONE,                                                  # a blank line
    CLAIM + DONE + DONE,                                                  # a repeated line
    CLAIM + CLAIM.replace("01KDVEHW2053AFK44VSG2YH3H4", "01KDVEHW2053AFK44VSG2YH3H5"),
    CLAIM + DONE.replace('"data":{', '"data":{"note":"shipped",'),       # a note
    CLAIM + DONE.replace('"data":{', '"data":{"files_modified":["a.py"],'),
    CLAIM.replace("2026-01-01T00:30", "2026-01-29T00:30") + DONE,         # a day past the 28th
    CLAIM.replace("2026-01-01T00:30", "2026-02-30T00:30") + DONE,         # not in the calendar
    CLAIM.replace("2026-01-01T00:15", "0000-01-01T00:15") + DONE,
    CLAIM.replace("bench@example.com", "bench\\u0040example.com") + DONE.replace("bench@example.com", "bench\\u0040example.com"),
    CLAIM.replace("bench@example.com", "b\\nx") + DONE.replace("bench@example.com", "b\\nx"),
    CLAIM.replace("bench@", "bénch@") + DONE.replace("bench@", "bénch@"),  # not ASCII: still common
    CLAIM.replace('"clock":1', '"clock":01') + DONE,
    CLAIM.replace('"clock":1', '"clock":9223372036854775808') + DONE.replace('"clock":2', '"clock":9223372036854775809'),
    CLAIM.replace("900.0", "1e3") + DONE,
    CLAIM.replace("900.0", "NaN") + DONE,
    CLAIM.replace("900.0", "-900.5") + DONE,
    DONE,                                                                 # done, never claimed
    DONE + CLAIM.replace('"clock":1', '"clock":3'),
    "",
])
def test_a_log_of_another_shape_gives_the_general_answer(data: str) -> None:
    agree(data.encode())


def test_invalid_utf8_and_bad_ids_go_the_general_way() -> None:
    assert common_row((CLAIM + DONE).replace("bench", "b\udcffnch").encode("utf-8", "surrogateescape"),
                      PLAN, TASK) is None
    bad = (CLAIM + DONE).replace("T-00836", "..x")
    assert common_row(bad.encode(), PLAN, "..x") is None
    assert general(bad.encode(), PLAN, "..x") is None


def test_any_one_byte_changed_gives_the_general_answer() -> None:
    """Every byte of the common log replaced by a handful of others, one at a time: the fast
    fold either declines or agrees with the general fold."""
    base = (CLAIM + DONE).encode()
    rng = random.Random(17)
    swaps = b'"\\{}:,. 0129AZaz\n\r\t\x00\x7f-_'
    fast = 0
    for i in range(len(base)):
        for b in rng.sample(swaps, 6) + [rng.randrange(256)]:
            data = base[:i] + bytes([b]) + base[i + 1:]
            if agree(data) is not None:
                fast += 1
        for data in (base[:i] + base[i + 1:], base[:i] + base[i:i + 1] * 2 + base[i + 1:]):
            if agree(data) is not None:
                fast += 1
    assert fast > 0  # some changes stay common (another digit of a time, another actor letter)


def test_logs_claim_and_done_write_are_common_and_read_the_same_cold_warm_and_off(tmp_path: Path) -> None:
    """A format 2 repository driven through the CLI: the logs `claim` and `done` write take
    the fast fold, and `status --json` (real processes) is the same cold, warm and with the
    cache off, beside logs that take the general way (a note, a failure, a release)."""
    import json
    import os
    import subprocess

    from flowgit.store.state import log_path
    from helpers import init_repo
    from helpers.cache import drop_derived

    r = init_repo(tmp_path / "repo", "2")
    r.plan("P", "id: P\ntitle: cold fold\ngoal: the common log\ntasks:\n"
           + "".join(f"  - id: T{i}\n    title: task {i}\n" for i in range(1, 7)))
    r.ok("submit", "P")
    r.ok("claim", "P/T1", "--worker", "w1")                                  # claimed: common
    r.ok("claim", "P/T2", "--worker", "w1")
    r.ok("done", "P/T2", "--worker", "w1")                                   # claimed, done: common
    r.ok("claim", "P/T3", "--worker", "w2")
    r.ok("done", "P/T3", "--worker", "w2", "--note", "finished")             # a note: general
    r.ok("claim", "P/T4", "--worker", "w2")
    r.ok("release", "P/T4", "--worker", "w2")                                # released: general

    def log(task: str) -> bytes:
        return subprocess.run(["git", "show", f"flow/state:{log_path('P', task)}"], cwd=r.path,
                              capture_output=True, check=True).stdout

    for task in ("T1", "T2"):
        assert common_row(log(task), "P", task) == general(log(task), "P", task) is not None
    for task in ("T3", "T4"):
        assert common_row(log(task), "P", task) is None

    def status(**env: str) -> object:
        out = subprocess.run([sys.executable, "-m", "flowgit", "status", "P", "--json"], cwd=r.path,
                             env={**os.environ, **env}, capture_output=True, text=True, check=True).stdout
        return json.loads(out)

    drop_derived(r.path)
    cold = status()
    warm = status()
    assert cold == warm == status(FLOWGIT_NO_CACHE="1")
    tasks = {t["id"]: t for t in cold["tasks"]}  # type: ignore[index]
    assert tasks["T1"]["state"] == "claimed" and tasks["T2"]["state"] == "done"
