"""The files flowgit ships beside its code, found in one place: package data in an install
(`flowgit.schemas`, `.template`, `.hooks`, `.examples`), the top-level folders in a checkout."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    from importlib.abc import Traversable

_CHECKOUT = Path(__file__).resolve().parent.parent
_FOLDERS = {"schemas": "schemas", "template": ".flow-template", "hooks": "hooks",
            "examples": "flowgit/examples", "agents": "flowgit/agents"}


def folder(kind: str) -> Traversable:
    """One of schemas, template, hooks, examples, agents."""
    try:
        packaged = files(f"flowgit.{kind}")
        if packaged.is_dir():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    return _CHECKOUT / _FOLDERS[kind]


def read_text(kind: str, name: str) -> str:
    return (folder(kind) / name).read_text(encoding="utf-8")


def template_files() -> Iterator[tuple[PurePosixPath, bytes]]:
    """Every file of the `.flow/` template, by its path inside `.flow/`. Walked through the
    resource API, never as a file system path: in an install the template is a namespace
    package, whose folder is no single path."""
    def walk(node: Traversable, rel: PurePosixPath) -> Iterator[tuple[PurePosixPath, bytes]]:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            if child.is_dir():
                yield from walk(child, rel / child.name)
            else:
                yield rel / child.name, child.read_bytes()
    return walk(folder("template"), PurePosixPath())
