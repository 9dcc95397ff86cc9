"""All output goes through here, so `--json` never mixes with text and tests can capture it."""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, TextIO

from flowgit.store import notices


class Output:
    def __init__(self, as_json: bool = False, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.as_json = as_json
        self.out = out or sys.stdout
        self.err = err or sys.stderr

    @property
    def is_tty(self) -> bool:
        return hasattr(self.out, "isatty") and self.out.isatty() and os.environ.get("TERM") != "dumb"

    def result(self, obj: Any, text: str | Callable[[], str] | None = None) -> None:
        """The command's one result: the JSON object, or its text form."""
        notices.flush()  # warnings about what was read come first
        if self.as_json:
            self.out.write(json.dumps(obj, ensure_ascii=False, sort_keys=False) + "\n")
        elif text is not None:
            rendered = text() if callable(text) else text
            if rendered:
                self.out.write(rendered if rendered.endswith("\n") else rendered + "\n")
        self.out.flush()

    def result_encoded(self, encoded: str, text: Callable[[], str]) -> None:
        """`result` for a result already encoded as JSON (`encoded`, one object)."""
        notices.flush()
        if self.as_json:
            self.out.write(encoded + "\n")
        else:
            rendered = text()
            if rendered:
                self.out.write(rendered if rendered.endswith("\n") else rendered + "\n")
        self.out.flush()

    def info(self, line: str) -> None:
        """Progress for people: stderr in JSON mode so stdout stays one object."""
        notices.flush()
        stream = self.err if self.as_json else self.out
        stream.write(line + "\n")
        stream.flush()

    def warn(self, line: str) -> None:
        self.err.write(f"warning: {line}\n")
        self.err.flush()

    def error(self, code: str, message: str) -> None:
        if self.as_json:
            self.out.write(json.dumps({"error": {"code": code, "message": message}}) + "\n")
            self.out.flush()
        else:
            self.err.write(f"flowgit: error: {message}\n")
            self.err.flush()
