"""Option types and options that several commands share, defined once."""
from __future__ import annotations

from typing import Any, Callable

import click

F = Callable[..., Any]


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """A duration in seconds: finite, above zero, and at most ten years (a date must follow)."""

    name = "seconds"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        from flowgit.core.model import MAX_SECONDS

        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not 0 < seconds <= MAX_SECONDS:  # NaN fails this too
            self.fail(f"{value!r}: use a number of seconds above 0 and at most {MAX_SECONDS:g}",
                      param, ctx)
        return seconds


class ActorName(click.ParamType):  # type: ignore[type-arg]  # generic only from click 8.2
    """Who acts: one line of printable text, at most 200 characters (a usage error otherwise)."""

    name = "name"

    def convert(self, value: Any, param: Any, ctx: Any) -> str:
        from flowgit.ids import check_actor

        # a UsageError, not click's: one line, exit 2, as actor_for says it for FLOWGIT_ACTOR
        what = "reviewer name" if param is not None and param.name == "reviewer" else "worker name"
        return check_actor(str(value), what)


WORKER = click.option("--worker", type=ActorName(),
                      help="Who acts (default: $FLOWGIT_ACTOR, then git user.email).")




def trust_flag(f: F) -> F:
    return click.option("--trust", "trust_now", is_flag=True,
                        help="Run the commands .flow/ holds now for this run only, trusted or not "
                             "(nothing is recorded; see `flowgit trust`).")(f)
