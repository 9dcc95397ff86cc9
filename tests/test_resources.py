"""What flowgit ships beside its code is found through the resource API, in a checkout and in
an install alike (a namespace package's folder is no single path: issue 12's wheel check)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from flowgit import resources

ROOT = Path(__file__).resolve().parents[1]


def test_the_template_is_walked_file_by_file() -> None:
    files = dict(resources.template_files())
    on_disk = {p.relative_to(ROOT / ".flow-template").as_posix(): p.read_bytes()
               for p in (ROOT / ".flow-template").rglob("*") if p.is_file()}
    assert {str(k): v for k, v in files.items()} == on_disk
    assert "config.yaml" in {str(k) for k in files}


def test_schemas_hook_and_example_are_found() -> None:
    assert resources.read_text("schemas", "plan.json").lstrip().startswith("{")
    assert resources.read_text("examples", "webhooks.yaml")
    assert (resources.folder("hooks") / "pre-commit").is_file()


def test_init_from_a_template_that_is_no_single_path(tmp_path: Path) -> None:
    """A MultiplexedPath (what an installed namespace package gives) has no usable str():
    init must still copy the template. Run in a process where the template resolves so."""
    repo = tmp_path / "r"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    code = f"""
import importlib.resources.readers as r, sys
from pathlib import Path
from flowgit import resources
real = resources.folder("template")
resources.folder = lambda kind, _f=resources.folder: (
    r.MultiplexedPath(Path(str(real))) if kind == "template" else _f(kind))
from flowgit.cli.main import main
sys.exit(main(["--repo", {str(repo)!r}, "init"]))
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (repo / ".flow" / "config.yaml").is_file()
