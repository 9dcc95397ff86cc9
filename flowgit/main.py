"""The console script's entry point (`flowgit.main:main` in every install); the CLI is `flowgit.cli`."""
from flowgit.cli.main import cli, main

__all__ = ["cli", "main"]

if __name__ == "__main__":
    raise SystemExit(main())
