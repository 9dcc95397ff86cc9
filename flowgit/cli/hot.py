"""The commands agents run hundreds of times (`status`, `next`, `events`, `claim`, `start`,
`heartbeat`, `release`, `retry`, `done`, `fail`), read without click when their command line is
plain: importing click costs a process ~20 ms of CPU, a fifth of a warm `done` (ADR 0007).

`read` takes only what click would parse the same way: the root's `--json` and `--repo DIR`
before the command, then the command's own options, each exactly as spelled in `tasks_cli.py`,
with a value that does not start with `-`, and its arguments. Anything else, and a value click
would refuse (`--lease x`, `--limit x`, a `--repo` that is a file), is None: click reads it,
with its own messages. The callbacks in `tasks_cli.py` call the functions here, so both ways
run the same code; tests/test_hot_path.py holds the two parsers to each other."""
from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import Any, Callable, NamedTuple

from flowgit.cli.app import App

FLAG, VALUE, MANY, NEEDED = "flag", "value", "multiple", "required value"

WORKER = {"--worker": ("worker", VALUE)}
SIMPLE = ((("ref", True),), WORKER)

# a command: its arguments (name, required) in order, and its options: spelling -> (name, kind)
SPECS: dict[str, tuple[tuple[tuple[str, bool], ...], dict[str, tuple[str, str]]]] = {
    "status": ((("plan_id", False),), {"--limit": ("limit", VALUE), "--all": ("everything", FLAG)}),
    "next": ((("plan_id", False),), {}),
    "events": ((("plan_id", True), ("task_id", False)), {"--from-git": ("from_git", FLAG)}),
    "claim": ((("target", False),), {**WORKER, "--lease": ("lease", VALUE), "--sync": ("sync_", FLAG),
                                     "--context": ("context", FLAG)}),
    "start": SIMPLE, "heartbeat": SIMPLE, "release": SIMPLE, "retry": SIMPLE,
    "done": ((("ref", True),), {**WORKER, "--note": ("note", VALUE), "--files-modified": ("files", MANY)}),
    "fail": ((("ref", True),), {**WORKER, "--error": ("error", NEEDED), "--retry": ("retry", FLAG),
                                "--skip": ("skip", FLAG), "--skip-dependents": ("skip_dependents", FLAG)}),
}


class Line(NamedTuple):
    command: str
    repo_dir: Path | None
    params: dict[str, Any]


def read(args: list[str]) -> Line | None:
    """The command line, read as click would read it; None for anything to leave to click."""
    if os.environ.get("_FLOWGIT_COMPLETE") or not all(isinstance(arg, str) for arg in args):
        return None  # click's shell completion; an argument in-process callers gave as a Path, say
    i, repo_dir = 0, None
    while i < len(args) and args[i] in ("--json", "--repo"):
        if args[i] == "--repo":
            if i + 1 == len(args) or (repo_dir := _directory(args[i + 1])) is None:
                return None
            i += 1
        i += 1
    if i == len(args) or args[i] not in SPECS:
        return None
    arguments, options = SPECS[args[i]]
    params: dict[str, Any] = {name: False if kind == FLAG else () if kind == MANY else None
                              for name, kind in options.values()}
    given: list[str] = []
    seen: set[str] = set()
    rest = iter(args[i + 1:])
    for token in rest:
        if not token.startswith("-"):
            given.append(token)
            continue
        if token == "--json":
            continue
        if token not in options or (token in seen and options[token][1] != MANY):
            return None
        seen.add(token)
        name, kind = options[token]
        if kind == FLAG:
            params[name] = True
            continue
        value = next(rest, "-")
        if value.startswith("-"):
            return None
        params[name] = params[name] + (value,) if kind == MANY else value
    if not sum(required for _, required in arguments) <= len(given) <= len(arguments):
        return None
    if any(kind == NEEDED and params[name] is None for name, kind in options.values()):
        return None
    params.update((name, given[n] if n < len(given) else None) for n, (name, _) in enumerate(arguments))
    for name, convert in (("limit", _int), ("lease", seconds)):
        if params.get(name) is not None:
            params[name] = convert(params[name])
            if params[name] is None:
                return None
    return Line(args[i], repo_dir, params)


def _directory(value: str) -> Path | None:
    """`--repo`'s value as click.Path(file_okay=False) takes it; None where click says no."""
    if value.startswith("-"):
        return None
    try:
        st = os.stat(value)
    except OSError:
        return Path(value)
    if stat.S_ISREG(st.st_mode) or not os.access(value, os.R_OK):
        return None
    return Path(value)


def _int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def seconds(value: str) -> float | None:
    """A duration in seconds as `--lease` takes it (options.Seconds); None where it refuses."""
    from flowgit.core.model import MAX_SECONDS

    try:
        number = float(value)
    except ValueError:
        return None
    return number if 0 < number <= MAX_SECONDS else None  # NaN fails this too


class _Aborted(Exception):
    """Ctrl-C or the end of input: what click reports as `Abort`."""


def run(app: App, line: Line) -> int:
    """What click does with the line: the root group's callback, the options' conversions, the
    config read first (options._config_first) and the command."""
    try:
        app.repo_dir = line.repo_dir
        params = dict(line.params)
        if params.get("worker") is not None:
            from flowgit.ids import check_actor

            params["worker"] = check_actor(params["worker"], "worker name")
        app.check_config()
        return BODIES[line.command](app, **params)
    except (EOFError, KeyboardInterrupt) as exc:
        sys.stderr.write("\n")  # click's echo: the blank line closes the terminal's ^C
        sys.stderr.flush()
        raise _Aborted() from exc
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        sys.stdout = _Pacified(sys.stdout)  # as click: a closed pipe ends the command with 1
        sys.stderr = _Pacified(sys.stderr)
        sys.exit(1)


def hot_exit(exc: Exception, app: App) -> int | None:
    """`main`'s handler for `_Aborted`: what it says for click's `Abort`."""
    if isinstance(exc, _Aborted):
        from flowgit.errors import ExitCode, Interrupted

        app.out.error(Interrupted.code, "aborted")
        return int(ExitCode.INTERRUPTED)
    return None


class _Pacified:
    """A stream whose flush ignores a closed pipe (click's _PacifyFlushWrapper)."""

    def __init__(self, wrapped: Any) -> None:
        self.wrapped = wrapped

    def flush(self) -> None:
        try:
            self.wrapped.flush()
        except OSError as exc:
            if exc.errno != errno.EPIPE:
                raise

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.wrapped, attr)


# ----- the commands (what tasks_cli.py's callbacks call too) -------------------------------------

def status(app: App, plan_id: str | None, limit: int | None, everything: bool) -> int:
    from flowgit.cli.commands import status
    return status.status(app, plan_id, limit, everything)


def next_task(app: App, plan_id: str | None) -> int:
    from flowgit.cli.commands import status
    return status.next_task(app, plan_id)


def events(app: App, plan_id: str, task_id: str | None, from_git: bool) -> int:
    from flowgit.cli.commands import status
    return status.events(app, plan_id, task_id, from_git)


def claim(app: App, target: str | None, worker: str | None, lease: float | None, sync_: bool,
          context: bool) -> int:
    from flowgit.cli.commands import tasks
    return tasks.claim(app, target, worker, lease, sync_, context)


def simple(name: str) -> Callable[..., int]:
    def run_simple(app: App, ref: str, worker: str | None) -> int:
        from flowgit.cli.commands import tasks
        return tasks.simple(app, name, ref, worker)
    return run_simple


def _utf8(option: str, *values: str | None) -> None:
    """Text that goes into an event must be UTF-8: an argument's byte the file system's
    encoding could not decode (`--note $'\\xff'`) arrives as a lone surrogate, which no log
    line can hold (it was a traceback, after the lock was taken)."""
    for value in values:
        try:
            (value or "").encode("utf-8")
        except UnicodeEncodeError:
            from flowgit.errors import UsageError

            raise UsageError(f"{option} {value!r} is not UTF-8 text: give it in UTF-8") from None


def done(app: App, ref: str, worker: str | None, note: str | None, files: tuple[str, ...]) -> int:
    from flowgit.cli.commands import tasks
    _utf8("--note", note)
    _utf8("--files-modified", *files)
    return tasks.done(app, ref, worker, note, list(files))


def fail(app: App, ref: str, worker: str | None, error: str, retry: bool, skip: bool,
         skip_dependents: bool) -> int:
    from flowgit.cli.commands import tasks
    from flowgit.errors import UsageError

    _utf8("--error", error)
    modes = [m for m, on in (("retry", retry), ("skip", skip), ("skip_dependents", skip_dependents)) if on]
    if len(modes) > 1:
        raise UsageError("--retry, --skip and --skip-dependents exclude each other: give one of them")
    return tasks.fail(app, ref, worker, error, modes[0] if modes else "fail")


BODIES: dict[str, Callable[..., int]] = {
    "status": status, "next": next_task, "events": events, "claim": claim, "done": done, "fail": fail,
    **{name: simple(name) for name in ("start", "heartbeat", "release", "retry")},
}
