"""A big plan's task list read straight into rows (formats/planrows.py, issue 17) gives what
the general path gives: the same plan, the same rows for the plan index, the same parsed
mapping (types and key order included), or, when the general path refuses the plan, no
answer of its own, so the refusal and its message are the general path's. Held on generated
plans (valid, broken, in between, mutated) and on big plans through `flowgit` itself."""
from __future__ import annotations

import json
import random
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from flowgit.core.index import TASK_FIELDS, task_rows
from flowgit.core.model import Plan
from flowgit.core.plaintask import PLAIN_KEYS
from flowgit.errors import InvalidFile
from flowgit.ids import is_valid_id
from flowgit.formats import fastyaml, planrows
from flowgit.store import planindex
from flowgit.store.planpin import PlanSource


def typed(value: Any) -> Any:
    """`value` with every scalar's type beside it, and every mapping's key order."""
    if isinstance(value, dict):
        return {"dict": [(typed(k), typed(v)) for k, v in value.items()]}
    if isinstance(value, list):
        return {"list": [typed(v) for v in value]}
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    return (type(value).__name__, value)


def outcome(text: str, monkeypatch: pytest.MonkeyPatch, rows: bool, fast_yaml: bool = True) -> Any:
    """What the plan index gets from `text`: the plan's fields, its rows, the parsed mapping
    and the head it keeps, or the error."""
    data = text.encode("utf-8")
    src = PlanSource(key=None, display="plan.yaml", where="work tree", read=lambda: data)
    with monkeypatch.context() as m:
        m.setattr(planindex, "MIN_CHARS", 0 if rows else 10**12)
        if not fast_yaml:
            m.setattr(fastyaml, "load", lambda *a: fastyaml.MISS)
        try:
            plan, raw = planindex._parse("big", data, src)
        except InvalidFile as exc:
            return "error", str(exc)
    whole = raw.build() if isinstance(raw, planindex.Parsed) else raw
    head = raw.head if isinstance(raw, planindex.Parsed) else {k: v for k, v in whole.items() if k != "tasks"}
    others = {f.name: getattr(plan, f.name) for f in fields(Plan) if f.name != "tasks"}
    return "ok", others, task_rows(plan.tasks), typed(whole), typed(head), plan.has_external_deps


def read_by_rows(text: str) -> bool:
    """Whether the plan index takes `text` from its rows (else the general path reads it)."""
    return planindex._read_rows("big", text, "plan.yaml") is not None


def test_the_fields_are_the_tasks() -> None:
    assert planrows.FIELDS == TASK_FIELDS
    assert set(planrows.KEYS) <= PLAIN_KEYS
    assert [k for k in TASK_FIELDS if k in planrows.KEYS] == list(planrows.KEYS)


IDS = ["T-{n}", "v1.{n}", "a.lock{n}", "CON{n}x", "T-{n}", "T-{n}", "x{n}", "{n}-setup", "a.b{n}", "A_{n}"]
ODD_IDS = ["true", "Null", "1", "2025-01-31", "1e3", "0x1F", "a..b", "x.", "CON", "con.txt", "com1", "x.lock",
           "T-{n}.lock", "lpt{n}", "LPT1.x",
           "T-1", "t-1", "é", "-x", "a b", "x" * 65, "'q'", "T-1 #c", "a:b"]
TEXT = ["Generated task number {n}", "Fix the parser", "a  b", "a:b", "a#b", "x/y.py", "(paren)",
        "é ü", "<b>", "tRue", "Nope", "n", "~x", "+x", ".x", "_1", "1d", "2h", "30m", "T-{n}",
        "a - b", "12 apples", "x? y", "a, b", "it's", "a \"quoted\" word"]
ODD_TEXT = ["true", "False", "null", "~", "<<", "=", "1", "0x1F", "1_000", ".5", "+1", "-1", "1e3",
            "2025-01-31", "12:30", "a: b", "a #b", "x ", "'q'", '"d"', "-x", "a\tb", "a\u2028b",
            "a\x85b", "[a]", "{a}", "|", "> x", "? x", "%x", "@x", "`x", "&a", "*a", "!x", "#c", "",
            "x # c", "a:", "- x", "'it''s'"]
LISTS = ["[]", "[T-1]", "[T-{m}]", "[T-1, T-{m}]", "[a b, c]", "[done when green]", "[x-1, y.2]"]
ODD_LISTS = ["[true]", "[1]", "[a,b]", "[ a]", "[a ]", "[-a]", "[a: b]", "[~]", "[<<]", "[x] #c",
             "[2025-01-01]", "[a, ]", "[[a]]", "[a]x", "['q']", "[null, x]", "[.5]", "[a\tb]", "[é]",
             "x", "[a, b", "{}"]
PRIORITIES = ["high", "medium", "low", "urgent", "High", "1", "~"]
ORDER = ["description", "depends_on", "acceptance", "priority", "estimate", "tags", "adrs"]
OTHER_KEYS = ["files", "executor", "colour", "run", "wait", "retry", "verify", "id", "title"]


def value(rng: random.Random, key: str, n: int, odd: float) -> str:
    if key in ("depends_on", "acceptance", "tags", "adrs", "files"):
        pool = ODD_LISTS if rng.random() < odd else LISTS
    elif key == "priority":
        pool = PRIORITIES[3:] if rng.random() < odd else PRIORITIES[:3]
    elif key == "id":
        pool = ODD_IDS if rng.random() < odd else IDS
    else:
        pool = ODD_TEXT if rng.random() < odd else TEXT
    return rng.choice(pool).replace("{n}", str(n)).replace("{m}", str(max(n - 1, 0)))


def test_an_ids_shape_is_as_valid_as_the_id() -> None:
    """planrows asks `ids.is_valid_id` once per shape of id (digits read as 0): true only while
    no rule of it tells one digit from another."""
    rng = random.Random(3)
    alphabet = "0123456789aAbcCoOnNmMpPrRtTuUxXkKlL.-_"
    shape = str.maketrans("123456789", "000000000")
    texts = [f"{d}{s}" for d in ("CON", "com", "LPT", "nul", "x", "9") for s in ("", "1", "9.txt", ".lock", ".", "..")]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9))) for _ in range(30000)]
    texts += [t * 8 for t in texts[:500]]
    for text in texts:
        assert is_valid_id(text) == is_valid_id(text.translate(shape)), text


def task_lines(rng: random.Random, n: int, odd: float) -> list[str]:
    keys = [k for k in ORDER if rng.random() < 0.4]
    if rng.random() < odd:
        roll = rng.random()
        if roll < 0.3:
            rng.shuffle(keys)
        elif roll < 0.6:
            keys.insert(rng.randrange(len(keys) + 1), rng.choice(OTHER_KEYS))
        elif keys:
            keys.append(keys[0])
    lines = [f"  - id: {value(rng, 'id', n, odd)}"]
    if rng.random() > odd / 2:
        lines.append(f"    title: {value(rng, 'title', n, odd)}")
    lines += [f"    {key}: {value(rng, key, n, odd)}" for key in keys]
    return lines


HEADS = [
    ["id: big", "title: Big plan"],
    ["# a generated plan", "id: big", "title: Big plan", "goal: Measure it"],
    ["id: big", "title: Big plan", "description: |", "  Two lines,", "", "  the second.", ""],
    ["id: big", "title: Big plan", "tags: [a, b]", "scope:", "  in: [api]", "  out: []", "retry:",
     "  max_attempts: 3"],
    ["title: Big plan", "id: big", "# tasks below"],
]
ODD_HEADS = [["id: big"], ["id: other", "title: Other"], ["id: big", "title: Big", "colour: red"],
             ["id: big", "title: 'Big: plan'"], ["id: big", 'title: "Big', "tasks:"],
             ["id: big", "title: Big", "tasks: []"], ["id: big", "title: Big", "goal: >", "  folded"],
             ["id: big", "title: Big", "parent: 7"], ["---", "id: big", "title: Big"]]
TAILS = [[], [], ["checkpoints:", "  - id: CP", "    after: [T-1]"], ["# the end"],
         ["risks:", "  - issue: slow", "verify: [make, test]"]]
ODD_TAILS = [["checkpoints:", "  - id: T-1", "    after: [T-2]"], ["tasks:", "  - id: Z", "    title: Z"],
             ["title: again"], ["milestones:", "  - id: M-1", "    title: like a task"],
             ["checkpoints:", "  - id: t-1", "    after: []"], ["checkpoints:", "  - id: CP", "    after: [NOPE/X]"],
             ["...", "other: doc"]]


def plan_text(rng: random.Random, odd: float) -> str:
    head = list(rng.choice(ODD_HEADS if rng.random() < odd else HEADS))
    tail = list(rng.choice(ODD_TAILS if rng.random() < odd else TAILS))
    lines = [*head, "tasks:"]
    for n in range(rng.randint(1, 12)):
        lines += task_lines(rng, n + 1, odd)
        if rng.random() < odd / 4:
            lines.append(rng.choice(["", "  # a comment", "    # deeper", "#", "  -", "   x: y"]))
    lines += tail
    if rng.random() < odd:
        k = rng.randrange(len(lines))
        line = lines[k]
        roll = rng.random()
        if roll < 0.35 and line:
            pos = rng.randrange(len(line) + 1)
            lines[k] = line[:pos] + rng.choice(":#-[]'\" \t|&*!{,?\r") + line[pos:]
        elif roll < 0.55 and line:
            pos = rng.randrange(len(line))
            lines[k] = line[:pos] + line[pos + 1:]
        elif roll < 0.7:
            lines.insert(k, line)
        elif roll < 0.85:
            lines[k] = " " * rng.randint(1, 3) + line
        else:
            lines[k] = line.lstrip(" ")
    text = "\n".join(lines)
    return text + "\n" if rng.random() < 0.95 else text


@pytest.mark.parametrize("seed", range(6))
def test_generated_plans_give_what_the_general_path_gives(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(seed)
    read = 0
    for k in range(500):
        text = plan_text(rng, odd=(0.0, 0.05, 0.3)[k % 3])
        fast = outcome(text, monkeypatch, rows=True)
        assert fast == outcome(text, monkeypatch, rows=False), text
        if read_by_rows(text):
            read += 1
            assert fast[0] == "ok", text  # never an answer of its own for a refused plan
            assert fast == outcome(text, monkeypatch, rows=False, fast_yaml=False), text  # ruamel's
    assert read > 120  # the comparison covers what the rows path reads, not only its misses


def test_what_it_reads_and_what_it_leaves() -> None:
    base = "id: big\ntitle: Big\ntasks:\n  - id: T-1\n    title: One\n"
    assert read_by_rows(base)
    assert read_by_rows("tasks:\n  - id: T-1\n    title: One\nid: big\ntitle: Big\n")
    assert planrows.read(base.replace("title: Big\n", "")) is not None and not read_by_rows(
        base.replace("title: Big\n", ""))  # the plan's own fields are checked by Plan.from_dict
    got = planrows.read(base + "  - id: T-2\n    title: Two\n    depends_on: [T-1]\n    priority: high\n"
                        "    estimate: 1d\n    tags: []\n")
    assert got is not None and got.rows[1] == (
        "T-2", "Two", "", ("T-1",), (), (), "high", "1d", None, (), None, None, (), (), ())
    for odd in ("    title: One # note\n", "    title: 'One'\n", "    files: [a.py]\n", "\n", "  # c\n",
                "    estimate: 2\n", "    priority: urgent\n", "    title: true\n", "   title: x\n"):
        assert not read_by_rows(base + "  - id: T-2\n" + odd), odd
    assert not read_by_rows(base + "  - id: T-1\n    title: Again\n")  # a duplicate id
    assert not read_by_rows(base + "  - id: t-1\n    title: Twin\n")  # a case twin
    assert not read_by_rows(base.replace("tasks:\n", "tasks:\n\n"))
    assert not read_by_rows(base.replace("  - id", "- id").replace("    title", "  title"))
    assert not read_by_rows(base.rstrip("\n"))


def big_plan(n: int, broken: str = "") -> str:
    lines = ["# generated", "id: big", "title: Big plan", "tasks:"]
    for i in range(n):
        lines += [f"  - id: T-{i:05d}", f"    title: Task number {i}"]
        if i >= 10:
            lines.append(f"    depends_on: [T-{i - 10:05d}]")
        lines += [f"    priority: {('high', 'medium', 'low')[i % 3]}", f"    estimate: {(i % 4) + 1}h"]
        if i == n // 2 and broken:
            lines.append(broken)
    lines += ["checkpoints:", "  - id: CP", f"    after: [T-{n - 1:05d}]"]
    return "\n".join(lines) + "\n"


def test_a_big_plan_reads_the_same_through_flowgit(repo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    text = big_plan(2000)  # just past MIN_CHARS: what a real process reads by rows
    assert len(text) > planindex.MIN_CHARS and read_by_rows(text)
    repo.write(".flow/plans/big/plan.yaml", text)
    repo.git("add", "-A")
    repo.git("commit", "-qm", "a big plan")
    outputs = {}
    for rows in (True, False):
        with monkeypatch.context() as m:
            m.setattr(planindex, "MIN_CHARS", 0 if rows else 10**12)
            m.setenv("FLOWGIT_NO_CACHE", "1")
            outputs[rows] = [json.loads(repo.ok(*argv).out) for argv in
                             (["status", "big", "--json"], ["next", "big", "--json"], ["validate", "--json"])]
    assert outputs[True] == outputs[False]
    r = repo.proc("status", "big", "--json")  # a real process, cold: the rows path, then warm
    assert r.returncode == 0, r.stderr
    again = repo.proc("status", "big", "--json")
    assert json.loads(r.stdout)["tasks"] == json.loads(again.stdout)["tasks"] == outputs[True][0]["tasks"]


BROKEN = {
    "duplicate id": "  - id: T-00003\n    title: Again",
    "unknown key": "    colour: red",
    "priority twice": "    priority: urgent",
    "yaml": "    title: a: b",
    "tab": "\ttitle: x",
    "device id": "  - id: CON\n    title: Device",
    "number title": "  - id: T-X\n    title: 12",
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_big_plan_is_refused_in_one_line_naming_the_file(
        case: str, repo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    text = big_plan(2000, BROKEN[case])
    assert len(text) > planindex.MIN_CHARS and not read_by_rows(text)  # a process tries the rows path
    plan = repo.write(".flow/plans/big/plan.yaml", text)
    before = repo.git("status", "--porcelain")
    r = repo.proc("--json", "status", "big")
    assert r.returncode == 1, (case, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr
    error = json.loads(r.stdout)["error"]["message"]
    assert "\n" not in error and "plan.yaml" in error, error
    with monkeypatch.context() as m:
        m.setattr(planindex, "MIN_CHARS", 10**12)
        assert json.loads(repo.run("--json", "status", "big").out)["error"]["message"] == error
    assert repo.git("status", "--porcelain") == before and plan.read_text() == text
    assert not Path(repo.path, ".flow", ".cache").exists()


@pytest.mark.parametrize("title", ["a:", "a: b", "a #b", "a ", "true", "12"])
def test_a_title_ruamel_refuses_or_types_is_never_read_by_rows(title: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of these is refused or typed by YAML; the rows path must leave it to the general
    one on every Python it runs on (3.11.2's possessive repeat of a group took `a:` whole)."""
    text = (f"id: big\ntitle: Big plan\ntasks:\n  - id: t1\n    title: {title}\n"
            "  - id: t2\n    title: two\n")
    assert not read_by_rows(text)
    assert outcome(text, monkeypatch, rows=True) == outcome(text, monkeypatch, rows=False)
