"""The fast YAML path (formats/fastyaml.py, issue 17) reads exactly what ruamel's safe loader
reads, and leaves everything else to it: on generated documents (valid, broken and in
between) `yamlio.loads` gives the same value, types included, or the same one-line error,
with the fast path on and off; and a plan with a broken YAML line, a schema violation, a
duplicate task or a cycle is refused by `flowgit` in the same words either way."""
from __future__ import annotations

import json
import random
from typing import Any

import pytest

from flowgit.errors import InvalidFile
from flowgit.formats import fastyaml, yamlio


def typed(value: Any) -> Any:
    """`value` with every scalar's type beside it (1, 1.0 and True are equal in Python)."""
    if isinstance(value, dict):
        return {"dict": [(typed(k), typed(v)) for k, v in value.items()]}
    if isinstance(value, list):
        return {"list": [typed(v) for v in value]}
    if isinstance(value, float) and value != value:
        return ("float", "nan")
    return (type(value).__name__, value)


def outcome(text: str, fast: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    with monkeypatch.context() as m:
        if not fast:
            m.setattr(fastyaml, "load", lambda *a: fastyaml.MISS)
        try:
            return "ok", typed(yamlio.loads(text, "f.yaml"))
        except InvalidFile as exc:
            return "error", str(exc)


KEYS = ["id", "title", "a", "b", "depends_on", "n", "T", "true", "null", "No", "x-y", "x_y", "1",
        "-a", "a b", "'q'", '"q"', "<<", "=", "key.dot", "é"]
# scalars the fast path reads, and others it must leave to ruamel (or read exactly as it)
PLAIN = ["x", "T-00001", "hello world", "a  b", "a:b", "a #b", "a#b", "'q'", "'it''s'", "'a' #c",
         '"d"', '"a # b"', "[a, b]", "[]", "[ ]", "[1, 2.5, true, null, ~]", "[x y,  z ]",
         "[T-1, T-2]", "[a] #c", "1", "-1", "+1", "0x1F", "1_000", "0o17", "017", "0b101", ".5",
         "-.5", ".inf", "-.INF", ".nan", "1e3", "1.5e3", "1_0.5", "2025-01-31", "2025-13-45",
         "2001-12-14t21:59:43.10-05:00", "true", "False", "TRUE", "yes", "on", "null", "Null", "~",
         "", "é ü", "<b>", "a, b", "a]", "a}", "x  ", "x # c  ", "#c", "a ' b", 'a " b', "a\\b",
         "src/x.py", "(paren)", "a [b] {c}", "Nope", "n", "t", "f1", "0", "00", "-", "12:30", "x? y",
         "a?b", "a ? b", "[x? y]", "[a?]", "a - b", "a -", "[a b - c]", "a,b", "[a,b]", "x!", "x&y",
         "x*", "a|b", "a>b", "a%b", "a@b", "a`b", "[x!]", "[x&y]", "a'b", 'a"b', "-0", "-.", "-x1"]
ODD = ["a: b", "a:", "'a'#c", "'open", '"a\\nb"', '"', "[a,]", "[a, [b]]", "[a, , b]", "[a:b]",
       "[a #b]", "[a] x", "[-a]", "2001-12-14 21:59:43.10 -5", "  ", "|", "|-", "|+", "|2", ">", "&a x",
       "*a", "!!str 1", "!x y", "{a: 1}", "{}", "- x", "-x", "?x", "? x", ":x", "%x", "@x", "`x",
       "a\tb", "a\u2028b", "a\x85b", "\ufeffa", "<<", "=", "- a: b", "'multi", "line'", "a\rb"]


def scalar(rng: random.Random) -> str:
    return rng.choice(ODD) if rng.random() < 0.12 else rng.choice(PLAIN)


TEXTS = ["one line", "", "  indented more", "# not a comment", "  ", "a: b", "- x", "tail"]


def block_text(rng: random.Random, indent: int) -> list[str]:
    lines = []
    pad = " " * rng.choice([indent + 1, indent + 2, indent + 4])
    for _ in range(rng.randint(0, 4)):
        text = rng.choice(TEXTS)
        lines.append((pad + text) if text.strip() or rng.random() < 0.5 else " " * rng.randint(0, 6))
    return lines


def node(rng: random.Random, indent: int, depth: int) -> list[str]:
    """A block mapping or list at `indent`, usually valid YAML."""
    pad = " " * indent
    lines: list[str] = []
    if depth > 3 or rng.random() < (0.85 if depth == 0 else 0.6):
        keys = rng.sample(KEYS[:8], rng.randint(1, 4)) if rng.random() < 0.95 else \
            [rng.choice(KEYS) for _ in range(rng.randint(1, 3))]
        for key in keys:
            roll = rng.random()
            sep = ": " if rng.random() < 0.95 else rng.choice([":", ":  ", " : ", ": # c ", ":\t"])
            if roll < 0.55:
                lines.append(f"{pad}{key}{sep}{scalar(rng)}")
            elif roll < 0.65:
                lines.append(f"{pad}{key}: {rng.choice(['|', '|-', '|', '|-', '|+', '>'])}")
                lines += block_text(rng, indent)
            elif roll < 0.75:
                lines.append(f"{pad}{key}:")
                lines += node(rng, indent + rng.choice([0, 1, 2, 2, 4]), depth + 1)
            else:
                lines.append(f"{pad}{key}:")
                lines += node(rng, indent + rng.choice([2, 4]), depth + 1)
            if rng.random() < 0.1:
                lines.append(rng.choice(["", "  ", f"{pad}# a comment", "# left", f"{pad}  # deeper"]))
    else:
        for _ in range(rng.randint(1, 3)):
            roll = rng.random()
            if roll < 0.45:
                lines.append(f"{pad}- {scalar(rng)}")
            elif roll < 0.9:
                first, *rest = node(rng, indent + 2, depth + 1) or [f"{pad}  a: b"]
                lines.append(f"{pad}- {first[indent + 2:]}" if first.startswith(" " * (indent + 2))
                             else f"{pad}- {first.lstrip()}")
                lines += rest
            elif roll < 0.95:
                lines.append(f"{pad}-")
                lines += node(rng, indent + 2, depth + 1)
    return lines


def mutate(rng: random.Random, lines: list[str]) -> list[str]:
    lines = list(lines)
    for _ in range(rng.randint(1, 2)):
        if not lines:
            break
        k = rng.randrange(len(lines))
        line = lines[k]
        roll = rng.random()
        if roll < 0.3 and line:
            pos = rng.randrange(len(line) + 1)
            lines[k] = line[:pos] + rng.choice([":", "#", "-", "[", "]", "'", '"', " ", "\t", "|", "&", "*",
                                                 "!", "{", ",", "?"]) + line[pos:]
        elif roll < 0.5 and line:
            pos = rng.randrange(len(line))
            lines[k] = line[:pos] + line[pos + 1:]
        elif roll < 0.7:
            lines.insert(k, line)
        elif roll < 0.85:
            lines[k] = " " * rng.randint(0, 3) + line
        else:
            lines[k] = line.lstrip(" ")
    return lines


def documents(seed: int, count: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        lines = node(rng, rng.choice([0, 0, 0, 2]), 0)
        if rng.random() < 0.3:
            lines = mutate(rng, lines)
        if rng.random() < 0.1:
            lines.insert(0, rng.choice(["---", "%YAML 1.2\n---", "# head", "", "..."]))
        text = "\n".join(lines)
        out.append(text + "\n" if rng.random() < 0.9 else text)
    return out


@pytest.mark.parametrize("seed", range(4))
def test_generated_documents_read_the_same_with_and_without_the_fast_path(
        seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    accepted = 0
    for text in documents(seed, 700):
        fast = outcome(text, True, monkeypatch)
        assert fast == outcome(text, False, monkeypatch), text
        accepted += fastyaml.load(text, yamlio.read_scalar) is not fastyaml.MISS
    assert accepted > 100  # the comparison covers what the fast path reads, not only misses


PLAN = """\
# a hand-written plan
id: web
title: Webhook delivery   # trailing comment
goal: 'Deliver each event: with retry'
description: |
  First line.

    indented # not a comment
  Last line.
tags: [a, b]
scope:
  in: [api]
  out: []
tasks:
  - id: T-1
    title: DB schema
    estimate: 2
    priority: high
    due: 2026-01-31
    acceptance:
      - "CRUD is tested"
      - it's done when it's done
  - id: T-2
    title: "Store"
    depends_on: [T-1]
    files:
    - internal/store.go
    description: |-
      two
      lines
    retry: {max: 3}
checkpoints:
  - id: CP
    after: [T-2]
"""


def test_a_hand_written_plan_reads_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    assert outcome(PLAN, True, monkeypatch) == outcome(PLAN, False, monkeypatch)
    body = PLAN.replace("    retry: {max: 3}\n", "")
    assert fastyaml.load(body, yamlio.read_scalar) is not fastyaml.MISS  # no flow mapping: read by the fast path
    assert outcome(body, True, monkeypatch) == outcome(body, False, monkeypatch)
    assert fastyaml.load(body, yamlio.read_scalar)["tasks"][0]["estimate"] == 2
    assert fastyaml.load(body) is fastyaml.MISS  # no way to read a number: ruamel's


def test_the_typing_patterns_are_ruamels() -> None:
    """The implicit resolvers copied into fastyaml are the ones ruamel's safe loader uses."""
    resolver = yamlio._resolver_class()()
    theirs = {first: [(tag.rsplit(":", 1)[1], rx.pattern, rx.flags) for tag, rx in rules]
              for first, rules in resolver.versioned_resolver.items()}
    ours = {first: [(tag, rx.pattern, rx.flags) for tag, rx in rules]
            for first, rules in fastyaml.RESOLVERS.items()}
    assert ours == theirs


BROKEN = {
    "yaml": ("tasks:\n  - id: T-1\n    title: a: b\n", "invalid YAML"),
    "schema": ("tasks:\n  - id: T-1\n    title: One\n    priority: urgent\n", "priority"),
    "unknown key": ("tasks:\n  - id: T-1\n    title: One\n    colour: red\n", "colour"),
    "duplicate task": ("tasks:\n  - id: T-1\n    title: One\n  - id: T-1\n    title: Two\n", "duplicate"),
    "duplicate key": ("tasks:\n  - id: T-1\n    title: One\n    title: Two\n", "invalid YAML"),
    "cycle": ("tasks:\n  - id: T-1\n    title: One\n    depends_on: [T-2]\n"
              "  - id: T-2\n    title: Two\n    depends_on: [T-1]\n", "cycle"),
    "tab": ("tasks:\n  - id: T-1\n\ttitle: One\n", "invalid YAML"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_flowgit_refuses_a_broken_plan_in_the_same_words_either_way(
        case: str, repo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`validate` and `status` on a broken plan.yaml: the same one-line error (exit 1, no
    traceback) with the fast path on and off, and nothing written."""
    body, word = BROKEN[case]
    plan = repo.write(".flow/plans/web/plan.yaml", "id: web\ntitle: Web\n" + body)
    before = (repo.git("rev-parse", "HEAD"), repo.git("status", "--porcelain"))
    results = {}
    for fast in (True, False):
        with monkeypatch.context() as m:
            if not fast:
                m.setattr(fastyaml, "load", lambda *a: fastyaml.MISS)
            for argv in (["validate"], ["status", "web"]):
                r = repo.run("--json", *argv)
                assert r.code == 1, (case, argv, r.out, r.err)
                assert "Traceback" not in r.out + r.err
                results[fast, argv[0]] = json.loads(r.out)["error"]
    assert results[True, "validate"] == results[False, "validate"]
    assert results[True, "status"] == results[False, "status"]
    assert word in results[True, "validate"]["message"] + results[True, "status"]["message"]
    assert "plan.yaml" in results[True, "status"]["message"]
    assert (repo.git("rev-parse", "HEAD"), repo.git("status", "--porcelain")) == before
    assert plan.read_text().startswith("id: web")


def test_numbers_are_read_by_the_safe_loader_and_kept_within_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fastyaml, "NUMBERS_KEPT", 10)
    fastyaml._NUMBERS.clear()
    text = "".join(f"k{i}: {i}.5\n" for i in range(50)) + "big: 0x1F\nneg: -7\n"
    value = yamlio.loads(text, "f.yaml")
    assert value == {**{f"k{i}": i + 0.5 for i in range(50)}, "big": 31, "neg": -7}
    assert len(fastyaml._NUMBERS) <= 10


def test_resolve_is_the_first_pattern_that_matches() -> None:
    """resolve's shortcuts (the words of the boolean and null patterns, the characters of
    numbers and dates) answer what trying each pattern of the first character answers."""
    rng = random.Random(7)
    alphabet = "0123456789+-._: eExXoObBaAfFtTzZiInNlLsSuU~<=!&*mhdw"
    texts = [*PLAIN, *ODD, "true", "TRUE", "tRue", "null", "NULL", "nul", "~", "", ".inf", ".NaN", "0x1f",
             "0o17", "0b1", "1_000", "1e5", "1.5e+5", "2001-12-14t21:59:43.10-05:00", "2001-12-14 21:59:43.10 -5",
             "2002-12-14", "<<", "=", "!", "&", "*"]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 8))) for _ in range(20000)]
    for text in texts:
        want = next((tag for tag, pattern in fastyaml.RESOLVERS.get(text[:1], ()) if pattern.match(text)), None)
        assert fastyaml.resolve(text) == want, text
