"""The console script's entry point (`flowgit.main:main` in every install); the CLI is `flowgit.cli`."""
import gc
import os
import sys

from flowgit import turns

# the commands cli/hot.py reads without click: agents run them hundreds of times, eight at once
HOT = frozenset({"status", "next", "events", "claim", "start", "heartbeat", "release", "retry", "done", "fail"})


def _hot_console(argv: list[str]) -> bool:
    """Whether this process is the console script (or `python -m flowgit`) running a hot command."""
    if not argv or not (os.path.basename(argv[0]) == "flowgit"
                        or argv[0] == os.path.join(os.path.dirname(__file__), "__main__.py")):
        return False  # a tool's own `__main__.py` that imports flowgit.main runs it in-process
    i = 1
    while i < len(argv) and argv[i] in ("--json", "--repo"):
        i += 2 if argv[i] == "--repo" else 1
    return i < len(argv) and argv[i] in HOT


if _hot_console(sys.argv):  # its turn on this machine's cores before the imports (ADR 0015)
    turns.take()

# Importing allocates only what lives as long as the process: the cyclic collector's passes
# over it find nothing and cost ~5 ms of every command's start, and once frozen the imported
# modules stay out of the passes the command itself triggers (ADR 0007).
gc.disable()
try:
    from flowgit.cli.main import main
finally:
    gc.freeze()
    gc.enable()

__all__ = ["main"]  # and `cli`, below


def __getattr__(name: str) -> object:
    if name == "cli":  # the click group, imported when asked for (cli/root.py)
        from flowgit.cli.root import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if __name__ == "__main__":
    raise SystemExit(main())
