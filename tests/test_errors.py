"""The error table: every error class takes its slug and exit code from `flowgit.errors.CODES`,
the docs list the same table, and no code branches on a slug or a message."""
from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
from pathlib import Path
from typing import Any

import pytest

import flowgit
from flowgit import errors
from flowgit.errors import CODES, ExitCode, FlowError

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "flowgit").rglob("*.py"))


def _all_error_classes() -> list[type[FlowError]]:
    for mod in pkgutil.walk_packages(flowgit.__path__, "flowgit."):
        if mod.name.endswith("mcp_server") or mod.name.endswith("__main__"):
            continue
        importlib.import_module(mod.name)
    out: list[type[FlowError]] = [FlowError]
    todo = [FlowError]
    while todo:
        for sub in todo.pop().__subclasses__():
            out.append(sub)
            todo.append(sub)
    return out


def test_every_error_class_takes_its_slug_and_exit_code_from_the_table() -> None:
    for cls in _all_error_classes():
        assert cls.code in CODES, cls
        assert cls.exit_code == CODES[cls.code][0], cls
        assert isinstance(cls.exit_code, ExitCode)


def test_every_slug_in_the_table_has_a_class() -> None:
    public = {cls.code for cls in vars(errors).values()
              if isinstance(cls, type) and issubclass(cls, FlowError)}
    assert public == set(CODES)


def test_a_slug_outside_the_table_is_refused_when_the_class_is_made() -> None:
    with pytest.raises(TypeError, match="not in flowgit.errors.CODES"):
        type("Bogus", (FlowError,), {"code": "bogus_slug"})


def test_usage_errors_exit_2_and_codes_are_the_documented_numbers() -> None:
    assert errors.UsageError.exit_code == 2
    assert [int(c) for c in ExitCode] == [0, 1, 2, 3, 4, 130]
    assert {slug: int(row[0]) for slug, row in CODES.items() if row[0] != ExitCode.USER} == {
        "usage": 2, "nothing_ready": 3, "race_lost": 4, "aborted": 130}


def _calls(tree: ast.AST) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call)]


def test_raised_errors_are_classes_from_the_table_not_slugs_passed_in() -> None:
    names = {cls.__name__ for cls in _all_error_classes()}
    raised: set[str] = set()
    for path in SOURCES:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) \
                    and isinstance(node.exc.func, ast.Name):
                raised.add(node.exc.func.id)
        for call in _calls(tree):
            if isinstance(call.func, ast.Name) and call.func.id in names:
                assert not [k for k in call.keywords if k.arg == "code"], \
                    f"{path}:{call.lineno}: pass no code=, raise the class that has it"
    assert raised & names, "the scan found no raises"
    for name in raised & names:
        cls = next(c for c in _all_error_classes() if c.__name__ == name)
        assert cls.code in CODES


def test_no_control_flow_compares_slugs_or_messages() -> None:
    for path in SOURCES:
        if path.name == "errors.py":  # where the table is checked
            continue
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare):
                continue
            for side in [node.left, *node.comparators]:
                if isinstance(side, ast.Attribute) and side.attr in ("code", "message"):
                    pytest.fail(f"{path}:{node.lineno}: compares .{side.attr}: catch a class instead")


def test_the_docs_list_the_same_table() -> None:
    text = (ROOT / "docs" / "errors.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z_]+)` \| (\d+) \|", text, re.M))
    assert rows == {slug: str(int(row[0])) for slug, row in CODES.items()}


def test_no_bare_130() -> None:
    for path in SOURCES:
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            assert not re.search(r"(?<![\w.])130(?![\w.])", code) or path.name == "errors.py", \
                f"{path}:{lineno}: name it ExitCode.INTERRUPTED"


def test_a_bad_worker_name_is_a_usage_error_exit_2(repo: Any) -> None:
    repo.plan("p", "id: p\ntitle: P\ngoal: G\ntasks:\n  - id: T-1\n    title: one\n")
    res = repo.run("--json", "claim", "p/T-1", "--worker", "x" * 201)
    assert res.code == 2, res
    assert json.loads(res.out)["error"]["code"] == "usage"
    res = repo.run("claim", "p/T-1", "--worker", "x" * 201)
    assert res.code == 2 and res.err.count("\n") == 1 and "invalid worker name" in res.err


def test_json_errors_keep_their_slugs(repo: Any) -> None:
    res = repo.run("--json", "status", "nosuch")
    assert res.code == 1 and res.json["error"]["code"] == "not_found"
    repo.plan("p", "id: p\ntitle: P\ngoal: G\ntasks:\n  - id: T-1\n    title: one\n")
    res = repo.run("--json", "plan", "new", "p")
    assert res.code == 1 and res.json["error"]["code"] == "exists"
    repo.ok("claim", "p/T-1", "--worker", "w")
    res = repo.run("--json", "claim", "p/T-1", "--worker", "w")
    assert res.code == 1 and res.json["error"]["code"] == "already_claimed"
    res = repo.run("--json", "claim", "p", "--worker", "w")
    assert res.code == 3 and res.json["error"]["code"] == "nothing_ready"
