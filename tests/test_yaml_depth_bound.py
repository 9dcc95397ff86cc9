"""The cheap nesting bound (issue 17): a plan's many `[a, b]` lists no longer send it through a
second parse, and nothing hidden in quotes, comments or tags gets a deep file past it."""
from __future__ import annotations

from typing import Any

import pytest

from flowgit.errors import InvalidFile
from flowgit.formats import yamlio

DEEP = "[" * 150 + "x" + "]" * 150


def wide(n: int) -> str:
    return "id: p\ntitle: t\ntasks:\n" + "".join(
        f"  - id: T{i}\n    title: t {i}\n    depends_on: [T0, T{i // 2}]\n" for i in range(1, n))


def test_many_flow_lists_are_settled_without_the_parsers_events(monkeypatch: pytest.MonkeyPatch) -> None:
    text = wide(3000) + "  - id: X\n    title: '[not, a] list' # [\n    depends_on: [T1]\n"

    def no_events(*_: Any) -> Any:
        raise AssertionError("the cheap look should have settled this file")

    monkeypatch.setattr("ruamel.yaml.main.YAML.parse", no_events)
    assert yamlio.depth_bound(text) < yamlio.MAX_YAML_DEPTH
    assert len(yamlio.loads(text, "w.yaml")["tasks"]) == 3000


@pytest.mark.parametrize("hide", [
    'a: ["' + "]" * 200 + '", ' + DEEP + "]\n",              # closers in a double-quoted scalar
    "a: ['" + "]" * 200 + "', " + DEEP + "]\n",              # ... a single-quoted one
    "a: [ # " + "]" * 200 + "\n  " + DEEP + "]\n",          # ... a comment
    "a: [!t " + "]" * 3 + "\n]\n" + "b: " + DEEP + "\n",       # a tag (not valid: still refused)
    'title: "' + "]" * 200 + '"\nb: ' + DEEP + "\n",         # closers outside any flow collection
    "text: |\n  " + "}" * 200 + "\nb: " + DEEP + "\n",       # ... in a block scalar
])
def test_closers_that_close_nothing_do_not_hide_depth(hide: str) -> None:
    text = wide(200) + hide
    with pytest.raises(InvalidFile, match="nested deeper than 100|invalid YAML"):
        yamlio.loads(text, "h.yaml")
    with pytest.raises(InvalidFile, match="nested deeper than 100|invalid YAML"):
        yamlio.rt_load(text, "h.yaml")


def test_the_bound_never_undercounts_a_real_file() -> None:
    ok = wide(300) + "x: " + "[" * 90 + "y" + "]" * 90 + "\n"
    assert yamlio.depth_bound(ok) >= 91
    assert yamlio.loads(ok, "ok.yaml")["x"] is not None
    too_deep = wide(300) + "x: " + "{a: " * 101 + "1" + "}" * 101 + "\n"
    with pytest.raises(InvalidFile, match=r"too.yaml:\d+: nested deeper than 100 levels"):
        yamlio.loads(too_deep, "too.yaml")


def test_an_alias_among_many_lists_is_still_refused() -> None:
    with pytest.raises(InvalidFile, match="aliases"):
        yamlio.loads(wide(300) + "x: &a [1]\ny: *a\n", "al.yaml")


@pytest.mark.parametrize("text", [
    "a: 1\nb: '2'\nc: !!str 3\nd: [x, 'y', !!str 4, 5.5, true, null, ~]\ne: {f: g}\n",
    "base: &b {x: 1}\nuse:\n  <<: *b\n  y: 2\n",                    # a merge key (alias refused)
    "k: 1\nk: 2\n",                                                  # a duplicate key
    "1: a\n'1': b\n? [c]\n: d\n",                                   # keys that are not text
    "d: 2025-01-31\nt: 2025-01-31T10:00:00Z\nbin: !!binary aGk=\nset: !!set {a, b}\n",
    "= : v\n",
])
def test_the_text_fast_path_gives_ruamels_answer(text: str) -> None:
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import SafeConstructor

    def plain(text: str) -> Any:
        yaml = yamlio._safe_yaml()

        class Plain(yamlio._constructor_class().__mro__[1]):  # type: ignore[misc,name-defined]
            pass

        Plain.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)
        yaml.Constructor = Plain
        return yaml.load(text)

    assert issubclass(yamlio._constructor_class(), SafeConstructor) and YAML
    try:
        want: Any = plain(text)
    except Exception as exc:  # noqa: BLE001 - the same refusal is what is compared
        want = type(exc)
    try:
        got: Any = yamlio._safe_yaml().load(text)
    except Exception as exc:  # noqa: BLE001
        got = type(exc)
    assert got == want
