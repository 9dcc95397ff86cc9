"""Markdown plans: a plan.md of headings and checklists, read into a plan.yaml dict.

The rules (docs/markdown-plans.md has a full example):

- The first ``# Heading`` is the title (the plan id when there is none). The goal is a
  ``Goal: ...`` line (``**Goal:**`` too) before the first section, else the first paragraph
  of a ``## Goal`` section, else the first paragraph after the title. A ``Tags: a, b`` line
  there fills ``tags``; the rest of that text and a ``## Notes`` section form ``description``.
- ``## Scope``: list items under ``Included:``, ``Excluded:``, ``Assumptions:`` and
  ``Constraints:`` labels (or ``### Included`` ... headings; unlabelled items are included).
  ``## Risks``: items ``issue — mitigation``, optionally ending in
  ``(likelihood: high, impact: low)``. ``## Checkpoints``: items
  ``CP-1: title (after: T-3, T-4)``. Checklists in these sections and in Goal and Notes are
  not tasks.
- Every other checklist item (``- [ ]``, ``- [x]``, ``* [ ]``, ``1. [ ]``) is a task; the box is
  ignored (what is done is recorded by events). A heading with tasks (or subheadings) under it
  groups them and adds its slug to their tags; a heading with none under it is a task itself,
  its text the description.
- A task may start with its id: ``T-1: Title``, ``**T-1** Title``, ``[T-1] Title``, or
  the id in backquotes. An id is one word with a digit or a ``-``/``_``/``.``; in the ``ID:``
  form it has no lowercase letter, so ``Docs: update`` stays a title. Other tasks get
  ``T-01``, ``T-02``, ... in order, skipping ids in use.
- Lines indented under an item (any line in a heading task's text) may be attributes, one
  per line, optionally bulleted or bold: ``depends on:`` (also ``depends:``, ``after:``,
  ``needs:``), ``files:``, ``tags:`` (comma-separated), ``acceptance:`` (repeatable),
  ``priority:``, ``estimate:``. An attribute with no value takes the list items that
  follow. Other lines are the description. ``(depends on: T-1)`` may end the item's line.
- A dependency is a task or checkpoint id, a task's exact title (any case), or
  ``OTHER-PLAN/TASK``. Mistakes raise ``ValueError("plan.md:LINE: what is wrong; what to do")``.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field

from flowgit.ids import is_valid_id

_ID_HINT = (
    "use letters, digits, '.', '_' or '-' (at most 64, starting with a letter or digit, no '..')"
)
_LEVELS = ("high", "medium", "low")


def _alternatives(words: Iterable[str]) -> str:
    """A regex alternation of words, longest first, any run of blanks matching a space."""
    ordered = sorted(words, key=len, reverse=True)
    return "|".join(re.escape(w).replace(r"\ ", r"[ \t]+") for w in ordered)


_DEP_KEYS = ("depends on", "depends_on", "depends", "after", "needs")
_ATTRIBUTES: dict[str, str] = {key: "depends_on" for key in _DEP_KEYS} | {
    "files": "files",
    "file": "files",
    "acceptance criteria": "acceptance",
    "acceptance": "acceptance",
    "priority": "priority",
    "estimate": "estimate",
    "tags": "tags",
}
_LIST_ATTRIBUTES = ("depends_on", "files", "acceptance", "tags")
_BOLD = r"(?:\*\*|__)?"


def _labelled(words: Iterable[str]) -> re.Pattern[str]:
    """`Label: value`, optionally bulleted and with the label in bold."""
    return re.compile(
        rf"^(?:[-*+][ \t]+)?{_BOLD}(?P<key>{_alternatives(words)}){_BOLD}[ \t]*:{_BOLD}"
        r"[ \t]*(?P<value>.*?)[ \t]*$",
        re.IGNORECASE,
    )


_ATTRIBUTE = _labelled(_ATTRIBUTES)
_GOAL = _labelled(["goal"])
_TAGS = _labelled(["tags"])
_RISK_ATTRIBUTE = _labelled(["mitigation", "likelihood", "impact"])
_SCOPE_LABELS: dict[str, str] = {
    "included": "included",
    "include": "included",
    "in scope": "included",
    "excluded": "excluded",
    "exclude": "excluded",
    "out of scope": "excluded",
    "assumptions": "assumptions",
    "assumption": "assumptions",
    "constraints": "constraints",
    "constraint": "constraints",
}
_SCOPE_LABEL = _labelled(_SCOPE_LABELS)
_SPECIAL_SECTIONS: dict[str, str] = {
    "scope": "scope",
    "risks": "risks",
    "risk": "risks",
    "goal": "goal",
    "goals": "goal",
    "checkpoints": "checkpoints",
    "checkpoint": "checkpoints",
    "notes": "notes",
    "note": "notes",
}

_HEADING = re.compile(r"^ {0,3}(?P<hashes>#{1,6})[ \t]+(?P<text>.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})")
_BULLET = re.compile(r"^(?P<indent>[ \t]*)(?:[-*+]|\d{1,9}[.)])(?:[ \t]+(?P<text>.*))?$")
_CHECKBOX = re.compile(r"^\[[ xX]\](?:[ \t]+(?P<text>.*))?$")
_INLINE_DEPS = re.compile(
    rf"[ \t]*\([ \t]*(?:{_alternatives(_DEP_KEYS)})[ \t]*:[ \t]*(?P<value>[^()]*?)[ \t]*\)[ \t]*$",
    re.IGNORECASE,
)
_INLINE_RISK = re.compile(
    r"[ \t]*\((?P<pairs>[ \t]*(?:likelihood|impact)[ \t]*:[^()]*)\)[ \t]*$", re.IGNORECASE
)
_ID_FORMS: tuple[tuple[re.Pattern[str], bool], ...] = (
    (re.compile(r"^\*\*(?P<id>[^\s*]+?):?\*\*:?(?:[ \t]+(?P<rest>.*))?$"), False),
    (re.compile(r"^\[(?P<id>[^\s\]]+)\]:?(?:[ \t]+(?P<rest>.*))?$"), False),
    (re.compile(r"^`(?P<id>[^\s`]+)`:?(?:[ \t]+(?P<rest>.*))?$"), False),
    (re.compile(r"^(?P<id>[^\s:*`\[\]]+):(?:[ \t]+(?P<rest>.*))?$"), True),
)
_LEADING_DASH = re.compile("^(?:[\u2014\u2013:]|-{1,2})[ \t]+")  # em dash, en dash
_RISK_SEPARATORS = ("\u2014", "\u2013", " -- ", " -> ", " \u2192 ", " - ")  # em, en dash, arrow


@dataclass(eq=False)
class _Heading:
    level: int
    text: str
    task: _Task
    parents: list[_Heading]
    has_tasks: bool = False


@dataclass(eq=False)
class _Task:
    """A task (or a checkpoint) as written, before ids are given and references resolved."""

    line: int
    title: str
    explicit_id: str | None
    indent: int = -1
    heading: _Heading | None = None
    groups: list[_Heading] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    depends: list[tuple[str, int]] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    acceptance: list[str] = field(default_factory=list)
    priority: str | None = None
    estimate: int | float | str | None = None
    tags: list[str] = field(default_factory=list)
    pending: tuple[str, int] | None = None
    id: str = ""


def parse_markdown_plan(text: str, plan_id: str, *, source: str = "plan.md") -> dict[str, object]:
    """Read a Markdown plan into a plan dict (see the module docstring for the rules)."""
    if not is_valid_id(plan_id):
        raise ValueError(f"invalid plan id {plan_id!r}: {_ID_HINT}")
    return _Parser(source).parse(text, plan_id)


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _split_list(value: str) -> list[str]:
    items = (item.strip().strip("`\"'").strip() for item in re.split(r"[,;]", value))
    return [item for item in items if item]


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _norm_title(text: str) -> str:
    return " ".join(text.split()).casefold()


def _attribute(line: str) -> tuple[str, str] | None:
    """An attribute line's (plan.yaml key, value), or None for another line."""
    match = _ATTRIBUTE.match(line.strip())
    if match is None:
        return None
    return _ATTRIBUTES[" ".join(match["key"].lower().split())], match["value"]


def _looks_like_id(token: str, *, colon: bool) -> bool:
    if not any(ch.isalnum() for ch in token):
        return False
    digit = any(ch.isdigit() for ch in token)
    separator = any(ch in "-_." for ch in token)
    lower = any(ch.islower() for ch in token)
    if colon:
        return not lower and (digit or separator)
    return digit or (separator and not lower)


def _split_id(text: str) -> tuple[str | None, str]:
    """'T-1: Title' -> ('T-1', 'Title'); a text without an id -> (None, text)."""
    for pattern, colon in _ID_FORMS:
        match = pattern.match(text)
        if match and _looks_like_id(match["id"], colon=colon):
            rest = _LEADING_DASH.sub("", (match["rest"] or "").strip())
            return match["id"], rest.strip()
    return None, text


def _item_text(line: str) -> tuple[int, str, bool] | None:
    """A list item's (indent, text, is a checklist item), or None for another line."""
    bullet = _BULLET.match(line)
    if not bullet:
        return None
    text = (bullet["text"] or "").strip()
    box = _CHECKBOX.match(text)
    if box:
        return len(bullet["indent"]), (box["text"] or "").strip(), True
    return len(bullet["indent"]), text, False


def _is_paragraph(block: list[str]) -> bool:
    first = block[0].strip()
    return not (_BULLET.match(first) or first.startswith(("|", ">", "<", "```", "~~~")))


def _blocks(lines: list[str | None]) -> list[list[str] | None]:
    """Blank-line separated blocks; a None line (a bare `Goal:`) is kept as a marker."""
    blocks: list[list[str] | None] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if line is None or not line.strip():
            if current:
                blocks.append(current)
                current = []
            if line is None:
                blocks.append(None)
        else:
            current.append(line)
    return blocks


def _text(lines: list[str]) -> str:
    """Lines as one text: dedented, trailing blanks gone, runs of blank lines made one."""
    text = textwrap.dedent("\n".join(line.rstrip() for line in lines)).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", text)


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.title: str | None = None
        self.goal: str | None = None
        self.goal_open = False  # the lines after `Goal: ...` in its paragraph go on the goal
        self.goal_section: list[str | None] = []
        self.preamble: list[str | None] = []
        self.notes: list[str] = []
        self.tags: list[str] = []
        self.scope: dict[str, list[str]] = {}
        self.scope_key = "included"
        self.risks: list[dict[str, str]] = []
        self.risk_indent = -1
        self.entries: list[_Task] = []
        self.checkpoints: list[_Task] = []
        self.headings: list[_Heading] = []
        self.items: list[_Task] = []
        self.special: tuple[str, int] | None = None

    def fail(self, line: int, message: str) -> ValueError:
        return ValueError(f"{self.source}:{line}: {message}")

    # Reading, line by line.

    def parse(self, text: str, plan_id: str) -> dict[str, object]:
        fence: str | None = None
        sink: list[str] | list[str | None] | None = None
        for number, raw in enumerate(text.lstrip("\ufeff").splitlines(), start=1):
            line = raw.expandtabs(4).rstrip()
            if fence is not None:
                if sink is not None:
                    sink.append(line)
                if line.strip().startswith(fence):
                    fence = None
                continue
            opening = _FENCE.match(line)
            if opening:
                fence = opening["fence"]
                sink = self.text_sink(line)
                if sink is not None:
                    sink.append(line)
                continue
            heading = _HEADING.match(line)
            if heading and heading["text"].strip():
                self.on_heading(number, len(heading["hashes"]), heading["text"].strip())
            elif self.special is not None:
                self.on_special_line(number, line, self.special[0])
            else:
                self.on_line(number, line)
        return self.finish(plan_id)

    def text_sink(self, line: str) -> list[str] | list[str | None] | None:
        """Where a fenced block starting at this line goes."""
        if self.special is not None:
            return self.notes if self.special[0] == "notes" else None
        indent = _indent(line)
        while self.items and self.items[-1].indent >= indent:
            self.items.pop()
        if self.items:
            return self.items[-1].body
        if self.headings:
            return self.headings[-1].task.body
        return self.preamble

    def on_heading(self, number: int, level: int, text: str) -> None:
        self.items = []
        if self.title is None and level == 1:
            self.title = text
            self.headings = []
            self.special = None
            return
        if self.special is not None:
            kind, special_level = self.special
            if level > special_level:
                if kind == "scope":
                    self.scope_key = _SCOPE_LABELS.get(
                        _norm_title(text).rstrip(":"), self.scope_key
                    )
                return
            self.special = None
        while self.headings and self.headings[-1].level >= level:
            self.headings.pop()
        kind_name = _SPECIAL_SECTIONS.get(_norm_title(text.strip("*_ ")).rstrip(":"))
        if kind_name is not None:
            self.special = (kind_name, level)
            self.scope_key = "included"
            self.risk_indent = -1
            return
        task = self.new_task(number, text, indent=-1)
        heading = _Heading(level, text, task, list(self.headings))
        task.heading = heading
        task.groups = heading.parents
        for parent in self.headings:
            parent.has_tasks = True
        self.headings.append(heading)
        self.entries.append(task)

    def new_task(self, number: int, text: str, *, indent: int) -> _Task:
        depends: list[tuple[str, int]] = []
        inline = _INLINE_DEPS.search(text)
        if inline:
            depends = [(ref, number) for ref in _split_list(inline["value"])]
            text = text[: inline.start()]
        explicit_id, title = _split_id(text.strip())
        return _Task(number, title, explicit_id, indent=indent, depends=depends)

    def on_line(self, number: int, line: str) -> None:
        """A line outside the special sections: preamble, an item, or a heading task's text."""
        if not line.strip():
            owner = self.owner()
            if owner is not None:
                owner.body.append("")
            elif not self.headings:
                self.preamble.append("")
            return
        indent = _indent(line)
        while self.items and self.items[-1].indent >= indent:
            self.items.pop()
        owner = self.owner()
        item = _item_text(line)
        if owner is not None and owner.pending is not None:
            key, pending_indent = owner.pending
            if item is not None and indent >= pending_indent:
                if item[1]:
                    self.set_attribute(owner, number, key, item[1], indent)
                return
            owner.pending = None
        if item is not None and item[2]:
            task = self.new_task(number, item[1], indent=indent)
            task.groups = list(self.headings)
            for heading in self.headings:
                heading.has_tasks = True
            self.entries.append(task)
            self.items.append(task)
        elif owner is not None:
            attribute = _attribute(line)
            if attribute is not None:
                self.set_attribute(owner, number, *attribute, indent)
            else:
                owner.body.append(line)
        else:
            self.on_preamble_line(line)

    def owner(self) -> _Task | None:
        if self.items:
            return self.items[-1]
        if self.headings:
            return self.headings[-1].task
        return None

    def on_preamble_line(self, line: str, into: list[str | None] | None = None) -> None:
        lines = self.preamble if into is None else into
        goal = _GOAL.match(line.strip())
        tags = _TAGS.match(line.strip())
        if self.goal_open and line.strip() and not (tags or _BULLET.match(line)):
            self.goal = f"{self.goal} {line.strip()}"
            return
        self.goal_open = False
        if goal and self.goal is None:
            if goal["value"]:
                self.goal = goal["value"]
                self.goal_open = True
            else:
                lines.append(None)
        elif tags and into is None:
            self.tags.extend(tag.lstrip("#") for tag in _split_list(tags["value"]))
        else:
            lines.append(line)

    def set_attribute(self, task: _Task, number: int, key: str, value: str, indent: int) -> None:
        value = value.strip()
        if not value:
            if key in _LIST_ATTRIBUTES:
                task.pending = (key, indent)
            return
        if key == "depends_on":
            task.depends.extend((ref, number) for ref in _split_list(value))
        elif key == "files":
            task.files.extend(_split_list(value))
        elif key == "tags":
            task.tags.extend(tag.lstrip("#") for tag in _split_list(value))
        elif key == "acceptance":
            task.acceptance.append(value)
        elif key == "priority":
            priority = value.strip("*_`").lower()
            if priority not in _LEVELS:
                raise self.fail(number, f"priority {value!r} is not high, medium or low")
            task.priority = priority
        elif re.fullmatch(r"\d+", value):
            task.estimate = int(value)
        elif re.fullmatch(r"\d*\.\d+", value):
            task.estimate = float(value)
        else:
            task.estimate = value

    # The special sections.

    def on_special_line(self, number: int, line: str, kind: str) -> None:
        if kind == "notes":
            self.notes.append(line)
        elif kind == "goal":
            self.on_preamble_line(line, into=self.goal_section)
        elif not line.strip():
            return
        elif kind == "scope":
            self.on_scope_line(line)
        elif kind == "risks":
            self.on_risk_line(number, line)
        else:
            self.on_checkpoint_line(number, line)

    def on_scope_line(self, line: str) -> None:
        item = _item_text(line)
        text = item[1] if item is not None else line.strip()
        label = _SCOPE_LABEL.match(text)
        if label:
            self.scope_key = _SCOPE_LABELS[" ".join(label["key"].lower().split())]
            self.scope.setdefault(self.scope_key, []).extend(_split_list(label["value"]))
        elif item is not None and text:
            self.scope.setdefault(self.scope_key, []).append(text)

    def on_risk_line(self, number: int, line: str) -> None:
        item = _item_text(line)
        indent = _indent(line)
        if self.risks and indent > self.risk_indent:
            attribute = _RISK_ATTRIBUTE.match(line.strip())
            if attribute:
                self.set_risk_field(number, attribute["key"].lower(), attribute["value"])
            return
        if item is None or not item[1]:
            return
        text = item[1]
        risk: dict[str, str] = {}
        self.risks.append(risk)
        self.risk_indent = indent
        pairs = _INLINE_RISK.search(text)
        if pairs:
            text = text[: pairs.start()]
        issue, mitigation = text.strip(), ""
        for separator in _RISK_SEPARATORS:
            if separator in text:
                issue, _, mitigation = (part.strip() for part in text.partition(separator))
                break
        risk["issue"] = issue
        if mitigation:
            risk["mitigation"] = mitigation
        if pairs:
            for pair in _split_list(pairs["pairs"]):
                key, _, value = pair.partition(":")
                self.set_risk_field(number, key.strip().lower(), value)

    def set_risk_field(self, number: int, key: str, value: str) -> None:
        value = value.strip()
        if key == "mitigation":
            self.risks[-1]["mitigation"] = value
            return
        value = value.lower()
        if value not in _LEVELS:
            raise self.fail(number, f"risk {key} {value!r} is not high, medium or low")
        self.risks[-1][key] = value

    def on_checkpoint_line(self, number: int, line: str) -> None:
        item = _item_text(line)
        indent = _indent(line)
        current = self.checkpoints[-1] if self.checkpoints else None
        if current is not None and indent > current.indent:
            attribute = _attribute(line)
            if attribute is not None and attribute[0] == "depends_on":
                self.set_attribute(current, number, "depends_on", attribute[1], indent)
            elif attribute is None and current.pending is not None and item is not None:
                self.set_attribute(current, number, "depends_on", item[1], indent)
            return
        if item is not None and item[1]:
            self.checkpoints.append(self.new_task(number, item[1], indent=indent))

    # Ids, references and the plan dict.

    def finish(self, plan_id: str) -> dict[str, object]:
        tasks = [t for t in self.entries if t.heading is None or not t.heading.has_tasks]
        if not tasks:
            raise self.fail(
                1, "no tasks found; add checklist items ('- [ ] Title') or '## Title' sections"
            )
        self.give_ids(tasks, self.checkpoints)
        self.resolve(tasks, self.checkpoints)
        plan: dict[str, object] = {"id": plan_id, "title": self.title or plan_id}
        goal, description = self.goal_and_description()
        if goal:
            plan["goal"] = goal
        if description:
            plan["description"] = description
        if self.tags:
            plan["tags"] = _unique(self.tags)
        scope = {key: items for key, items in self.scope.items() if items}
        if scope:
            order = ("included", "excluded", "assumptions", "constraints")
            plan["scope"] = {key: scope[key] for key in order if key in scope}
        plan["tasks"] = [_task_dict(task) for task in tasks]
        if self.checkpoints:
            plan["checkpoints"] = [_checkpoint_dict(cp) for cp in self.checkpoints]
        if self.risks:
            plan["risks"] = self.risks
        return plan

    def give_ids(self, tasks: list[_Task], checkpoints: list[_Task]) -> None:
        used: dict[str, int] = {}
        for entry in sorted(tasks + checkpoints, key=lambda t: t.line):
            if entry.explicit_id is None:
                continue
            if not is_valid_id(entry.explicit_id):
                raise self.fail(entry.line, f"invalid id {entry.explicit_id!r}: {_ID_HINT}")
            if entry.explicit_id in used:
                raise self.fail(
                    entry.line,
                    f"id {entry.explicit_id} is already used on line {used[entry.explicit_id]}; "
                    "give each task and checkpoint its own id",
                )
            used[entry.explicit_id] = entry.line
            entry.id = entry.explicit_id
        for entries, prefix in ((tasks, "T"), (checkpoints, "CP")):
            counter = 0
            for entry in entries:
                if entry.id:
                    continue
                counter += 1
                while f"{prefix}-{counter:02d}" in used:
                    counter += 1
                entry.id = f"{prefix}-{counter:02d}"
                used[entry.id] = entry.line
        for entries, what in ((tasks, "task"), (checkpoints, "checkpoint")):
            for entry in entries:
                if not entry.title:
                    raise self.fail(entry.line, f"{what} {entry.id} has no title; write one")

    def resolve(self, tasks: list[_Task], checkpoints: list[_Task]) -> None:
        ids = {entry.id for entry in tasks + checkpoints}
        titles: dict[str, list[str]] = {}
        for task in tasks:
            titles.setdefault(_norm_title(task.title), []).append(task.id)
        described = [(t, f"task {t.id} depends on") for t in tasks]
        described += [(cp, f"checkpoint {cp.id} comes after") for cp in checkpoints]
        for entry, who in described:
            resolved: list[str] = []
            for ref, number in entry.depends:
                target = self.resolve_one(ref, number, who, ids, titles)
                if target == entry.id:
                    raise self.fail(number, f"{who} itself; remove that dependency")
                resolved.append(target)
            entry.depends = [(target, 0) for target in _unique(resolved)]

    def resolve_one(
        self, ref: str, number: int, who: str, ids: set[str], titles: dict[str, list[str]]
    ) -> str:
        if ref in ids:
            return ref
        matches = titles.get(_norm_title(ref), [])
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise self.fail(
                number,
                f"{who} {ref!r}, which is the title of {', '.join(matches)}; use one of those ids",
            )
        if "/" in ref:
            plan, _, task = ref.partition("/")
            if is_valid_id(plan) and is_valid_id(task):
                return ref
            raise self.fail(
                number, f"{who} {ref!r}, which is not a valid OTHER-PLAN/TASK reference"
            )
        raise self.fail(
            number,
            f"{who} {ref!r}, which is neither a task id nor a title; "
            "use a task or checkpoint id, or a task's exact title",
        )

    def goal_and_description(self) -> tuple[str | None, str]:
        goal = self.goal
        rest: list[str] = []
        section = [b for b in _blocks(self.goal_section) if b is not None]
        if goal is None and section and _is_paragraph(section[0]):
            goal = " ".join(line.strip() for line in section.pop(0))
        blocks = _blocks(self.preamble)
        bare_goal_line = None in blocks
        seen_goal_line = False
        for block in blocks:
            if block is None:
                seen_goal_line = True
            elif goal is None and seen_goal_line == bare_goal_line and _is_paragraph(block):
                goal = " ".join(line.strip() for line in block)
            else:
                rest.append(_text(block))
        rest.extend(_text(block) for block in section)
        notes = _text(self.notes)
        if notes:
            rest.append(notes)
        return goal, "\n\n".join(part for part in rest if part)


def _task_dict(task: _Task) -> dict[str, object]:
    out: dict[str, object] = {"id": task.id, "title": task.title}
    description = _text(task.body)
    if description:
        out["description"] = description
    if task.depends:
        out["depends_on"] = [ref for ref, _ in task.depends]
    if task.files:
        out["files"] = _unique(task.files)
    if task.acceptance:
        out["acceptance"] = task.acceptance
    if task.priority is not None:
        out["priority"] = task.priority
    if task.estimate is not None:
        out["estimate"] = task.estimate
    tags = _unique([s for s in (_slug(g.text) for g in task.groups) if s] + task.tags)
    if tags:
        out["tags"] = tags
    return out


def _checkpoint_dict(checkpoint: _Task) -> dict[str, object]:
    out: dict[str, object] = {"id": checkpoint.id, "title": checkpoint.title}
    if checkpoint.depends:
        out["after"] = [ref for ref, _ in checkpoint.depends]
    return out
