"""Option types and options that several commands share, defined once; `command`, the
decorator every command is registered with."""
from __future__ import annotations

import functools
from typing import Any, Callable

import click

from flowgit.cli.app import App

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


CLEAR_FIELD = click.option(
    "--clear", multiple=True, help="Remove a field (repeatable).",
    type=click.Choice(["description", "depends_on", "files", "acceptance", "priority", "estimate", "run"]))


def task_fields(f: F) -> F:
    """The fields `task add` sets and `task edit` changes (a list given replaces the task's)."""
    for opt in reversed([
        click.option("--description", default=None),
        click.option("--dep", "deps", multiple=True,
                     help="A dependency (repeatable; on edit, the list replaces the task's)."),
        click.option("--file", "files", multiple=True,
                     help="A file the task touches (repeatable; replaces, as --dep)."),
        click.option("--accept", "acceptance", multiple=True,
                     help="An acceptance criterion (repeatable; replaces, as --dep)."),
        click.option("--priority", type=click.Choice(["high", "medium", "low"])),
        click.option("--estimate", default=None, help="Hours, or 30m / 2h / 1d."),
        click.option("--run", "run_cmd", default=None, help="The command the shell executor runs."),
    ]):
        f = opt(f)
    return f


def _json_flag(f: F) -> F:
    """`--json` is accepted after the command too."""
    def set_json(ctx: click.Context, _p: click.Parameter, value: bool) -> None:
        if value:
            ctx.find_object(App).out.as_json = True  # type: ignore[union-attr]
    return click.option("--json", "json_", is_flag=True, expose_value=False, callback=set_json,
                        is_eager=True, help="Print exactly one JSON object.")(f)


# commands that report a bad config in their own way (or make one) instead of stopping for it
# (`sync` and `doctor` run on the work tree's config when the one recorded in the state does not
# read: a sync brought it, and they are the way out; store/configpin.follow_work)
_OWN_CONFIG_CHECK = frozenset({"init", "validate", "doctor", "demo", "mcp", "install", "sync"})


def _config_first(f: F) -> F:
    """A config that flowgit refuses stops every command with the line `validate` gives,
    whether or not the command needs the setting that is wrong."""
    @functools.wraps(f)
    def wrapper(app: App, *args: Any, **kwargs: Any) -> Any:
        app.check_config()
        return f(app, *args, **kwargs)
    return wrapper


class Family(click.Group):
    """The commands one module defines, added to the root group when one of them is named:
    `flowgit done` imports cli/tasks_cli.py, not the modules of every other command (ADR 0007)."""

    def register(self, cli: click.Group) -> None:
        for name, cmd in self.commands.items():
            cli.add_command(cmd, name)


def command(group: click.Group, name: str, **kw: Any) -> Callable[[F], click.Command]:
    def deco(f: F) -> click.Command:
        if name not in _OWN_CONFIG_CHECK:
            f = _config_first(f)
        return group.command(name, **kw)(_json_flag(click.pass_obj(f)))
    return deco
