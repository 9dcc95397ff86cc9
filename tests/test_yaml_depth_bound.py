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
