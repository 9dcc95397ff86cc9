from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from flowgit.formats.jsonlmerge import event_sort_key, merge_driver_main, merge_logs, parse_lines


def line(ident: str, clock: int, actor: str = "w1", **extra: Any) -> bytes:
    ev = {"id": ident, "type": "task.note", "plan": "p", "task": "T-1", "actor": actor,
          "at": "2026-11-22T10:00:00.000000Z", "clock": clock, "data": extra}
    return (json.dumps(ev) + "\n").encode()


A, B, C, D = line("A", 1), line("B", 2), line("C", 3, "w2"), line("D", 3, "w1")


def test_parse_lines() -> None:
    events = parse_lines(A + B)
    assert [e["id"] for e in events] == ["A", "B"]
    assert parse_lines(b"") == []
    assert parse_lines(A + b"\n  \n" + B) == parse_lines(A + B)  # blank lines skipped


def test_torn_last_line_dropped() -> None:
    assert [e["id"] for e in parse_lines(A + B[:-1])] == ["A"]
    assert [e["id"] for e in parse_lines(A + b'{"id": "X", "cl')] == ["A"]


@pytest.mark.parametrize(
    ("data", "number"),
    [
        (A + b"not json\n", 2),
        (b"[1, 2]\n", 1),
        (A + B + b'{"type": "x"}\n', 3),
        (b'{"id": 5}\n', 1),
        (b'{"id": ""}\n', 1),
        (A + b"\xff\xfe\n", 2),
    ],
)
def test_bad_line_names_line_number(data: bytes, number: int) -> None:
    with pytest.raises(ValueError, match=f"line {number}"):
        parse_lines(data)


@pytest.mark.parametrize(
    ("ev", "key"),
    [
        ({"id": "x", "clock": 3, "actor": "a"}, (3, "a", "x")),
        ({"id": "x"}, (0, "", "x")),
        ({"id": "x", "clock": True, "actor": None}, (0, "", "x")),
        ({"id": "x", "clock": "7"}, (0, "", "x")),
    ],
)
def test_event_sort_key(ev: dict[str, Any], key: tuple[int, str, str]) -> None:
    assert event_sort_key(ev) == key


def test_union_sorted_and_dedup() -> None:
    base = A
    ours = A + D
    theirs = A + B + C
    assert merge_logs(base, ours, theirs) == A + B + D + C  # (3, w1) before (3, w2)


def test_dedup_identical_lines() -> None:
    assert merge_logs(b"", A + B, B + A + B) == A + B


def test_order_independent() -> None:
    ours, theirs = A + C, B + D
    assert merge_logs(A, ours, theirs) == merge_logs(A, theirs, ours)
    assert merge_logs(b"", ours, theirs) == merge_logs(b"", theirs, ours) == A + B + D + C


def test_original_bytes_kept() -> None:
    odd = b'{"clock":2,  "id":"Z","actor":"w9" ,"x":"\xc3\xa9"}\n'
    out = merge_logs(b"", A, odd)
    assert out == A + odd


def test_conflicting_bytes_ours_wins() -> None:
    ours = line("A", 1, note="ours")
    theirs = line("A", 1, note="theirs")
    assert merge_logs(b"", ours, theirs) == ours
    assert merge_logs(b"", theirs, ours) == theirs


def test_torn_lines_dropped_in_merge() -> None:
    assert merge_logs(A, A + B[:-3], A + C) == A + C


def test_deleted_on_one_side_stays_deleted() -> None:
    snapshot = line("S", 5)
    # ours compacted A and B into a snapshot; theirs appended C
    assert merge_logs(A + B, snapshot, A + B + C) == C + snapshot
    assert merge_logs(A + B, A + B + C, snapshot) == C + snapshot
    # the plain union on request
    assert merge_logs(A + B, snapshot, A + B + C, keep_deleted=True) == A + B + C + snapshot


def test_bad_input_names_side() -> None:
    with pytest.raises(ValueError, match="theirs: line 2"):
        merge_logs(b"", A, A + b"oops\n")


def test_merge_driver(tmp_path: Path) -> None:
    base, ours, theirs = tmp_path / "base", tmp_path / "ours", tmp_path / "theirs"
    base.write_bytes(A)
    ours.write_bytes(A + D)
    theirs.write_bytes(A + B + C)
    assert merge_driver_main([str(base), str(ours), str(theirs), "events/T-1.jsonl"]) == 0
    assert ours.read_bytes() == A + B + D + C
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base", "ours", "theirs"]


def test_merge_driver_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, ours, theirs = tmp_path / "base", tmp_path / "ours", tmp_path / "theirs"
    base.write_bytes(b"")
    ours.write_bytes(A)
    theirs.write_bytes(b"garbage\n")
    assert merge_driver_main([str(base), str(ours), str(theirs)]) == 1
    assert ours.read_bytes() == A  # untouched
    err = capsys.readouterr().err
    assert "theirs: line 1" in err and "\n" == err[-1] and err.count("\n") == 1


def test_merge_driver_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert merge_driver_main(["only-one"]) == 2
    assert "usage" in capsys.readouterr().err


def test_merge_driver_missing_file(tmp_path: Path) -> None:
    ours = tmp_path / "ours"
    ours.write_bytes(A)
    assert merge_driver_main([str(tmp_path / "nope"), str(ours), str(ours)]) == 1
