"""The files flowgit ships beside its code, found in one place: package data in an install
(`flowgit.schemas`, `.template`, `.hooks`, `.examples`), the top-level folders in a checkout."""
from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Traversable

_CHECKOUT = Path(__file__).resolve().parent.parent
_FOLDERS = {"schemas": "schemas", "template": ".flow-template", "hooks": "hooks",
            "examples": "flowgit/examples"}


def folder(kind: str) -> Traversable:
    """One of schemas, template, hooks, examples."""
    try:
        packaged = files(f"flowgit.{kind}")
        if packaged.is_dir():
            return packaged
    except (ModuleNotFoundError, TypeError):
        pass
    return _CHECKOUT / _FOLDERS[kind]


def read_text(kind: str, name: str) -> str:
    return (folder(kind) / name).read_text(encoding="utf-8")


def template_dir() -> Path:
    """The `.flow/` template as a real directory (init copies it with shutil)."""
    return Path(str(folder("template")))
