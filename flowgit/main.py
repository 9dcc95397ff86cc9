"""The console script's entry point (`flowgit.main:main` in every install); the CLI is `flowgit.cli`."""
import gc

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
