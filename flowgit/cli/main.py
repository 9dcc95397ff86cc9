"""The command line's entry: `main`, the one handler that maps errors to their line and exit
code. A plain command line of a command agents run hundreds of times is read by `cli/hot.py`
without importing click; any other goes to the root group and the table of commands in
`cli/root.py`. The click callbacks live in one module per family (`cli/*_cli.py`) and only
unpack options and call `cli/commands/`."""
from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

from flowgit.cli import hot
from flowgit.cli.app import App
from flowgit.cli.output import Output
from flowgit.errors import FileSystemError, FlowError
from flowgit.store import notices


def __getattr__(name: str) -> Any:
    """`cli`, `COMMANDS` and `LazyGroup`, where they were before `cli/root.py` held them."""
    if name in ("cli", "COMMANDS", "LazyGroup"):
        from flowgit.cli import root

        return getattr(root, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# What the file system says about a write it refused: the user's to fix, in one line
FILE_SYSTEM_ERRNOS = {errno.EROFS: "make it writable, or work in a clone that is",
                      errno.ENOSPC: "free some space and run the command again",
                      errno.EDQUOT: "free some space (or raise the quota) and run the command again",
                      errno.EACCES: "check who owns it and its permissions",
                      errno.EPERM: "check who owns it and its permissions",
                      errno.EIO: "the disk reported an error",
                      errno.EFBIG: "the file is larger than the file system allows",
                      # a commit (a teammate's, pulled) put a folder where flowgit keeps a file
                      errno.EISDIR: "a folder where flowgit expects a file: put the file back "
                                    "(git log -- PATH shows who replaced it)",
                      errno.ENOTDIR: "a file where flowgit expects a folder: put the folder back "
                                     "(git log -- PATH shows who replaced it)"}


def file_system_message(exc: OSError, app: App) -> str:
    where = str(exc.filename) if exc.filename else ""
    root = app._repo.root if app._repo is not None else None
    if where and root is not None and Path(where).is_relative_to(root):
        where = Path(where).relative_to(root).as_posix()
    what = exc.strerror or os.strerror(exc.errno or 0)
    return f"{where + ': ' if where else ''}{what}: {FILE_SYSTEM_ERRNOS[exc.errno or 0]}"


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one flowgit command; `out`/`err` default to the process's streams."""
    args = list(sys.argv[1:] if argv is None else argv)
    app = App(out=Output(as_json="--json" in args, out=out, err=err))
    line = hot.read(args)
    if line is not None:
        return handled(app, lambda: hot.run(app, line), hot.hot_exit)
    from flowgit.cli.root import cli, click_exit

    return handled(app, lambda: cli.main(args=args, prog_name="flowgit", standalone_mode=False, obj=app),
                   click_exit)


def handled(app: App, invoke: Callable[[], Any], other: Callable[[Exception, App], int | None]) -> int:
    """`invoke()`'s exit code, its errors said; `other` says what the parser's own exceptions
    (click's, or hot.py's) mean."""
    try:
        with notices.reporting(app.out.warn):
            try:
                rv = invoke()
            except FlowError as exc:
                notices.flush(unless=exc.message)  # the error names that line itself
                raise
    except FlowError as exc:
        app.out.error(exc.code, exc.message)
        return int(exc.exit_code)
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.errno not in FILE_SYSTEM_ERRNOS:
            raise  # anything else is a bug: its traceback says where
        app.out.error(FileSystemError.code, file_system_message(exc, app))
        return int(FileSystemError.exit_code)
    except Exception as exc:
        code = other(exc, app)
        if code is None:
            raise
        return code
    finally:
        try:
            app.close()
        except FlowError:
            pass
        if "flowgit.store.trust" in sys.modules:  # --trust lasts one command, also in-process
            sys.modules["flowgit.store.trust"].clear_session()
    return int(rv or 0)


if __name__ == "__main__":
    raise SystemExit(main())
