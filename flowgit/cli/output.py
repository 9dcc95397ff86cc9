"""All output goes through here, so `--json` never mixes with text and tests can capture it."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, TextIO

from flowgit import turns
from flowgit.store import notices

# control characters and the bidi overrides a name from a teammate can carry (git allows them in
# file and ref names): shown escaped, so an error stays one line and the terminal shows what is there
_SHOWN = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7f, 0xa0)]}
_SHOWN.update({c: f"\\u{c:04x}" for c in [*range(0x202a, 0x202f), *range(0x2066, 0x206a), 0x200e, 0x200f]})
_SHOWN.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def shown(line: str) -> str:
    """`line` as one line of plain text."""
    return line.translate(_SHOWN)


_LINES = {k: v for k, v in _SHOWN.items() if k not in (ord("\n"), ord("\t"))}


def plain_text(text: str) -> str:
    """A command's text result with a title's or a worker's control characters escaped (a
    teammate's plan or claim can hold `ESC]0;...` or `ESC[2J` for the terminal to obey);
    tabs and CRLF line ends (a file shown as it is) stay. Checked at C speed first, so a clean
    text costs no translation."""
    if text.replace("\n", "").isprintable():
        return text
    return text.translate(_LINES).replace("\\r\n", "\r\n")


class Output:
    def __init__(self, as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.as_json = as_json
        # a closed stream is None in Python (`flowgit status >&-`): said to nothing, as click.echo does
        self.out = out or sys.stdout or open(os.devnull, "w")
        self.err = err or sys.stderr or open(os.devnull, "w")

    @property
    def is_tty(self) -> bool:
        return hasattr(self.out, "isatty") and self.out.isatty() and os.environ.get("TERM") != "dumb"

    def result(self, obj: Any, text: str | Callable[[], str] | None = None) -> None:
        """The command's one result: the JSON object, or its text form."""
        notices.flush()  # warnings about what was read come first
        if self.as_json:
            self._final(json.dumps(obj, ensure_ascii=False, sort_keys=False) + "\n")
        elif text is not None:
            rendered = plain_text(text() if callable(text) else text)
            self._final(rendered if not rendered or rendered.endswith("\n") else rendered + "\n")
        else:
            self._final("")

    def result_encoded(self, encoded: str, text: Callable[[], str]) -> None:
        """`result` for a result already encoded as JSON (`encoded`, one object)."""
        notices.flush()
        if self.as_json:
            self._final(encoded + "\n")
        else:
            rendered = plain_text(text())
            self._final(rendered if not rendered or rendered.endswith("\n") else rendered + "\n")

    def _final(self, text: str) -> None:
        """The result, written without this process's turn on the cores (flowgit.turns): the
        work is done, and a reader that stopped reading (a pager, `| less`) would otherwise
        keep the turn from every other flowgit command for as long as it does."""
        turns.give_back()
        if text:
            self.out.write(text)
        self.out.flush()

    def info(self, line: str) -> None:
        """Progress for people: stderr in JSON mode so stdout stays one object."""
        notices.flush()
        stream = self.err if self.as_json else self.out
        stream.write(line + "\n")
        stream.flush()

    def warn(self, line: str) -> None:
        self.err.write(f"warning: {shown(line)}\n")
        self.err.flush()

    def error(self, code: str, message: str) -> None:
        if self.as_json:
            self.out.write(json.dumps({"error": {"code": code, "message": message}}) + "\n")
            self.out.flush()
        else:
            self.err.write(f"flowgit: error: {shown(message)}\n")
            self.err.flush()
