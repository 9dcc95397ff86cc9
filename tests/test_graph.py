from __future__ import annotations

import random
import time

import pytest

from flowgit.core.graph import (
    FORMATS,
    Node,
    critical_path,
    critical_rank,
    find_cycle,
    parallel_groups,
    render,
    topo_order,
)

# The webhook plan from the seeds (seeds/000): 02 needs 01, 03 needs 02, 04 and 05 need 03,
# 06 needs 03, 04 and 05, and the checkpoint CP-WH comes after 06.
WEBHOOK = {
    "T-WH-01": [],
    "T-WH-02": ["T-WH-01"],
    "T-WH-03": ["T-WH-02"],
    "T-WH-04": ["T-WH-03"],
    "T-WH-05": ["T-WH-03"],
    "T-WH-06": ["T-WH-03", "T-WH-04", "T-WH-05"],
    "CP-WH": ["T-WH-06"],
}
VIA_04 = ["T-WH-01", "T-WH-02", "T-WH-03", "T-WH-04", "T-WH-06", "CP-WH"]
VIA_05 = ["T-WH-01", "T-WH-02", "T-WH-03", "T-WH-05", "T-WH-06", "CP-WH"]


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        pytest.param({}, None, id="empty"),
        pytest.param(WEBHOOK, None, id="dag"),
        pytest.param({"a": ["a"]}, ["a", "a"], id="self-loop"),
        pytest.param({"a": ["b"], "b": ["a"]}, ["a", "b", "a"], id="two-cycle"),
        pytest.param({"a": ["b"], "b": ["c"], "c": ["a"]}, ["a", "b", "c", "a"], id="longer"),
        pytest.param({"c": ["a"], "b": ["c"], "a": ["b"]}, ["a", "b", "c", "a"], id="key-order"),
        pytest.param({"a": ["b"], "b": ["c"], "c": ["b"]}, ["b", "c", "b"], id="behind-a-path"),
        pytest.param(
            {"a": [], "b": ["a"], "x": ["y"], "y": ["z"], "z": ["y"]},
            ["y", "z", "y"],
            id="only-from-later-node",
        ),
        pytest.param({"z": ["z"], "a": ["c"], "c": ["a"]}, ["a", "c", "a"], id="smallest-id-first"),
        pytest.param(
            {"a": ["other/T-1", "gone"], "b": ["a", "a"]}, None, id="unknown-deps-ignored"
        ),
    ],
)
def test_find_cycle(deps: dict[str, list[str]], expected: list[str] | None) -> None:
    assert find_cycle(deps) == expected


def test_find_cycle_is_iterative() -> None:
    ring = {f"n{i:05d}": [f"n{(i + 1) % 5000:05d}"] for i in range(5000)}
    cycle = find_cycle(ring)
    assert cycle is not None
    assert len(cycle) == 5001
    assert cycle[:3] == ["n00000", "n00001", "n00002"]
    assert cycle[-1] == "n00000"


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        pytest.param({}, [], id="empty"),
        pytest.param({"b": [], "a": []}, ["a", "b"], id="independent-by-id"),
        pytest.param({"z": [], "a": ["z"], "m": []}, ["m", "z", "a"], id="kahn-smallest-available"),
        pytest.param(
            {"d": ["b", "c"], "c": ["a"], "b": ["a"], "a": []}, ["a", "b", "c", "d"], id="diamond"
        ),
        pytest.param({"a": ["x/T"], "b": ["a", "a"]}, ["a", "b"], id="unknown-and-duplicate-deps"),
        pytest.param(
            WEBHOOK, [*VIA_05[:3], "T-WH-04", "T-WH-05", "T-WH-06", "CP-WH"], id="webhook"
        ),
    ],
)
def test_topo_order(deps: dict[str, list[str]], expected: list[str]) -> None:
    assert topo_order(deps) == expected


@pytest.mark.parametrize(
    ("deps", "expected"),
    [
        pytest.param({}, [], id="empty"),
        pytest.param({"b": [], "a": []}, [["a", "b"]], id="one-level"),
        pytest.param(
            {"a": [], "b": [], "c": ["a"], "d": ["a", "c"]},
            [["a", "b"], ["c"], ["d"]],
            id="longest-chain-decides",
        ),
        pytest.param(
            WEBHOOK,
            [["T-WH-01"], ["T-WH-02"], ["T-WH-03"], ["T-WH-04", "T-WH-05"], ["T-WH-06"], ["CP-WH"]],
            id="webhook",
        ),
    ],
)
def test_parallel_groups(deps: dict[str, list[str]], expected: list[list[str]]) -> None:
    assert parallel_groups(deps) == expected


@pytest.mark.parametrize("function", [topo_order, parallel_groups, critical_path, critical_rank])
def test_cycle_is_a_value_error(function: object) -> None:
    with pytest.raises(ValueError, match=r"dependency cycle: a -> b -> a"):
        function({"a": ["b"], "b": ["a"], "c": []})  # type: ignore[operator]


# Tie-break rule: the heaviest source-to-sink path; on a tie the smallest id wins, first among
# the sources and then at each step among the dependents. With equal weights 04 and 05 tie, so
# the path goes through T-WH-04; a heavier 05 moves it to T-WH-05.
@pytest.mark.parametrize(
    ("deps", "weights", "expected"),
    [
        pytest.param({}, None, [], id="empty"),
        pytest.param(WEBHOOK, None, VIA_04, id="webhook-unweighted-tie-by-id"),
        pytest.param(WEBHOOK, {"T-WH-04": 2, "T-WH-05": 2}, VIA_04, id="webhook-weighted-tie"),
        pytest.param(WEBHOOK, {"T-WH-05": 3}, VIA_05, id="webhook-heavier-05"),
        pytest.param(WEBHOOK, {"T-WH-04": 0.5}, VIA_05, id="webhook-lighter-04"),
        pytest.param({"b": [], "a": []}, None, ["a"], id="sources-tie-by-id"),
        pytest.param({"a": [], "b": [], "c": ["b"]}, None, ["b", "c"], id="longer-source-wins"),
        pytest.param({"a": [], "b": []}, {"b": 2}, ["b"], id="heavier-source-wins"),
        pytest.param(
            {"a": [], "b": ["a"]}, {"a": 0, "b": 0}, ["a", "b"], id="zero-weights-reach-sink"
        ),
        pytest.param({"a": ["x/T"], "b": ["a"]}, None, ["a", "b"], id="unknown-deps-ignored"),
    ],
)
def test_critical_path(
    deps: dict[str, list[str]], weights: dict[str, float] | None, expected: list[str]
) -> None:
    assert critical_path(deps, weights) == expected


def test_critical_rank() -> None:
    rank = critical_rank(WEBHOOK, {"T-WH-05": 3})
    assert rank == {
        "CP-WH": 1,
        "T-WH-01": 8,
        "T-WH-02": 7,
        "T-WH-03": 6,
        "T-WH-04": 3,
        "T-WH-05": 5,
        "T-WH-06": 2,
    }
    assert list(rank) == sorted(WEBHOOK)


@pytest.mark.parametrize("weight", [-1.0, float("nan"), float("inf")])
def test_bad_weight_is_a_value_error(weight: float) -> None:
    with pytest.raises(ValueError, match="weight of 'a'"):
        critical_path({"a": []}, {"a": weight})


def test_deps_as_a_string_is_refused() -> None:
    with pytest.raises(TypeError):
        topo_order({"a": "bc"})


def _large(n: int = 5000) -> dict[str, list[str]]:
    rng = random.Random(7)
    ids = [f"T-{i:05d}" for i in range(n)]
    return {node: [ids[j] for j in rng.sample(range(i), min(i, 3))] for i, node in enumerate(ids)}


@pytest.mark.parametrize("function", [topo_order, parallel_groups, critical_path, find_cycle])
def test_5000_nodes_are_fast(function: object) -> None:
    deps = _large()
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        function(deps)  # type: ignore[operator]
        best = min(best, time.perf_counter() - started)
    assert best < 0.1


# --- views -------------------------------------------------------------------------------

TITLES = {
    "T-WH-01": "DB schema: webhooks + webhook_deliveries tables",
    "T-WH-02": "WebhookStore",
    "T-WH-03": "WebhookWorker",
    "T-WH-04": "RetryScheduler",
    "T-WH-05": "EventBus integration",
    "T-WH-06": "Tests",
    "CP-WH": "All tasks + integration tests passing",
}
HOURS = {"T-WH-01": 2, "T-WH-02": 3, "T-WH-03": 4, "T-WH-04": 2, "T-WH-05": 1, "T-WH-06": 3}
STATES = {"T-WH-01": "done", "T-WH-02": "done", "T-WH-03": "in_progress"}


def webhook_nodes() -> list[Node]:
    return [
        Node(
            id=node,
            title=TITLES[node],
            deps=tuple(deps),
            kind="checkpoint" if node == "CP-WH" else "task",
            state=STATES.get(node, "pending"),
            hours=HOURS.get(node, 1.0),  # the checkpoint's hour is ignored: gates weigh 0
            worker="w1" if node == "T-WH-03" else None,
        )
        for node, deps in WEBHOOK.items()
    ]


def test_render_mermaid() -> None:
    out = render(webhook_nodes(), "mermaid", title="webhooks")
    lines = out.splitlines()
    assert lines[:4] == ["---", 'title: "webhooks"', "---", "flowchart TD"]
    assert (
        '    T_WH_01["T-WH-01: DB schema#58; webhooks + webhook_deliveries tables"]:::done' in lines
    )
    assert '    T_WH_03["T-WH-03: WebhookWorker (w1)"]:::in_progress' in lines
    assert '    CP_WH{{"CP-WH: All tasks + integration tests passing"}}:::pending' in lines
    assert "    T_WH_03 --> T_WH_06" in lines
    assert "    T_WH_06 --> CP_WH" in lines
    assert sum(" --> " in line for line in lines) == 8
    assert "    classDef done fill:#c8e6c9,stroke:#2e7d32,color:#000" in lines
    assert any(line.startswith("    classDef in_progress ") for line in lines)
    assert "    classDef critical stroke-width:4px" in lines
    assert "    class T_WH_01,T_WH_02,T_WH_03,T_WH_04,T_WH_06,CP_WH critical" in lines
    # edges in order: 01>02, 02>03, 03>04, 03>05, 03>06, 04>06, 05>06, 06>CP
    assert "    linkStyle 0,1,2,5,7 stroke:#d32f2f,stroke-width:3px" in lines
    assert out.endswith("\n")


def test_render_mermaid_ids_and_escaping() -> None:
    nodes = [
        Node("a.b", 'Say "hi" #1; <b>&`x`', ()),
        Node("a-b", "second", ("a.b",)),
        Node("end", "reserved", ("a-b",)),
    ]
    lines = render(nodes, "mermaid", title='a "quoted": title').splitlines()
    assert lines[1] == 'title: "a \\"quoted\\": title"'
    assert (
        '    a_b_2["a.b: Say #quot;hi#quot; #35;1#59; #60;b#62;#38;#96;x#96;"]:::pending' in lines
    )
    assert '    a_b["a-b: second"]:::pending' in lines
    assert '    n_end["end: reserved"]:::pending' in lines
    assert "    a_b_2 --> a_b" in lines
    assert "    a_b --> n_end" in lines


def test_render_dot() -> None:
    lines = render(webhook_nodes(), "dot", title="webhooks").splitlines()
    assert lines[0] == "digraph flowgit {"
    assert lines[-1] == "}"
    assert '    label="webhooks";' in lines
    assert (
        '    "T-WH-01" [label="T-WH-01\\nDB schema: webhooks + webhook_deliveries tables", '
        'fillcolor="#c8e6c9", color="#2e7d32", penwidth=3, tooltip="done"];'
    ) in lines
    assert (
        '    "T-WH-05" [label="T-WH-05\\nEventBus integration", '
        'fillcolor="#eceff1", color="#90a4ae", tooltip="pending"];'
    ) in lines
    assert any(line.startswith('    "CP-WH" [') and "shape=hexagon" in line for line in lines)
    assert '    "T-WH-03" -> "T-WH-04" [color="#d32f2f", penwidth=2.5, style=bold];' in lines
    assert '    "T-WH-03" -> "T-WH-05";' in lines
    assert sum(" -> " in line for line in lines) == 8


def test_render_dot_escaping() -> None:
    nodes = [Node("a", 'He said "no" \\ then\nleft', ())]
    out = render(nodes, "dot", title='t"x')
    assert '    label="t\\"x";' in out
    assert 'label="a\\nHe said \\"no\\" \\\\ then left"' in out


def test_render_ascii() -> None:
    assert render(webhook_nodes(), "ascii", title="webhooks") == (
        "webhooks\n"
        "Group 1:\n"
        "  * [done]        T-WH-01  DB schema: webhooks + webhook_deliveries tables\n"
        "Group 2:\n"
        "  * [done]        T-WH-02  WebhookStore  <- T-WH-01\n"
        "Group 3:\n"
        "  * [in_progress] T-WH-03  WebhookWorker (w1)  <- T-WH-02\n"
        "Group 4 (parallel):\n"
        "  * [pending]     T-WH-04  RetryScheduler  <- T-WH-03\n"
        "    [pending]     T-WH-05  EventBus integration  <- T-WH-03\n"
        "Group 5:\n"
        "  * [pending]     T-WH-06  Tests  <- T-WH-03, T-WH-04, T-WH-05\n"
        "Group 6:\n"
        "  * [pending]     CP-WH    All tasks + integration tests passing  <- T-WH-06\n"
        "Critical path: T-WH-01 -> T-WH-02 -> T-WH-03 -> T-WH-04 -> T-WH-06 -> CP-WH (14 h)\n"
        "Execution order: T-WH-01, T-WH-02, T-WH-03, T-WH-04, T-WH-05, T-WH-06, CP-WH\n"
    )


def test_render_ascii_strips_control_characters() -> None:
    out = render([Node("a", "evil\x1b[2Jtitle\nnext", (), hours=1.5)], "ascii")
    assert "\x1b" not in out
    assert "  * [pending] a  evil [2Jtitle next\n" in out
    assert "Critical path: a (1.5 h)\n" in out


def test_render_gantt() -> None:
    lines = render(webhook_nodes(), "gantt", title="webhooks: 2026").splitlines()
    assert lines[:6] == [
        "gantt",
        "    title webhooks#58; 2026",
        "    dateFormat X",
        "    axisFormat %H:%M",
        "    todayMarker off",
        "    section Group 1",
    ]
    assert (
        "    T-WH-01 DB schema#58; webhooks + webhook_deliveries tables"
        " :done, crit, T_WH_01, 0, 7200"
    ) in lines
    assert "    T-WH-03 WebhookWorker (w1) :active, crit, T_WH_03, 18000, 32400" in lines
    assert "    T-WH-04 RetryScheduler :crit, T_WH_04, 32400, 39600" in lines
    assert "    T-WH-05 EventBus integration :T_WH_05, 32400, 36000" in lines
    assert "    T-WH-06 Tests :crit, T_WH_06, 39600, 50400" in lines
    assert (
        "    CP-WH All tasks + integration tests passing :crit, milestone, CP_WH, 50400, 50400"
        in lines
    )
    assert "    section Group 4" in lines


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_is_deterministic(fmt: str) -> None:
    nodes = webhook_nodes()
    first = render(nodes, fmt, title="webhooks")
    assert render(list(reversed(nodes)), fmt, title="webhooks") == first
    assert render(nodes, fmt, title="webhooks").encode() == first.encode()


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_empty(fmt: str) -> None:
    assert render([], fmt).endswith("\n")


@pytest.mark.parametrize("fmt", FORMATS)
def test_render_large(fmt: str) -> None:
    nodes = [Node(node, f"task {node}", tuple(deps)) for node, deps in _large().items()]
    started = time.perf_counter()
    render(nodes, fmt)
    assert time.perf_counter() - started < 1.0


def test_render_refuses_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown graph format 'svg'"):
        render(webhook_nodes(), "svg")


def test_render_refuses_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="duplicate node id 'a'"):
        render([Node("a", "x", ()), Node("a", "y", ())], "ascii")


def test_render_refuses_a_cycle() -> None:
    with pytest.raises(ValueError, match="dependency cycle: a -> b -> a"):
        render([Node("a", "x", ("b",)), Node("b", "y", ("a",))], "mermaid")
