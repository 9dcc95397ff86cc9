"""A task's text in a plan file, found with the fast (C) composer and spliced in place: editing,
removing or adding one task rewrites that task's lines only, and every other byte of the file
(comments, layout, quoting, line endings) stays as it was. A file this cannot read line by line
(a flow-style task list, unusual line breaks) gets None, and the caller uses the round-trip
editor instead."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple

from flowgit.errors import InvalidFile
from flowgit.formats import yamlio

# Line breaks YAML 1.1 (libyaml) counts that Python's str.splitlines sees differently, or not.
_ODD_BREAKS = re.compile("[\x85\u2028\u2029\x0b\x0c\x1c\x1d\x1e]|\r(?!\n)")
_LINES = re.compile(r"[^\n]*\n|[^\n]+\Z")


@dataclass(frozen=True)
class Span:
    """Lines `first` to `last` (0-based, inclusive) hold the task; its dash is at `column`."""

    first: int
    last: int
    column: int


@dataclass(frozen=True)
class Layout:
    lines: list[str]  # with their line ends
    spans: dict[str, Span]  # task id -> its lines, in file order
    tasks_line: int  # the line of the `tasks:` key


def _last_line(node: Any) -> int:
    """The last line holding the node's text (a block mapping's own end mark runs on to the
    next item: only scalars and flow collections end where their text ends)."""
    if getattr(node, "flow_style", False) or not isinstance(node.value, list):
        end = node.end_mark
        line: int = end.line
        return line - 1 if end.column == 0 and line > node.start_mark.line else line
    last: int = node.start_mark.line
    for item in node.value:
        for part in (item if isinstance(item, tuple) else (item,)):
            last = max(last, _last_line(part))
    return last


def read(text: str, display: str) -> Layout | None:
    """Where each task's text is, or None when the file is not laid out one task per run of
    lines (then edit it with the round-trip editor). InvalidFile if it is no YAML at all."""
    from ruamel.yaml.error import YAMLError
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    if _ODD_BREAKS.search(text):
        return None
    body = text.lstrip("\ufeff")
    yamlio.check_shape(body, display)
    try:
        root = yamlio._safe_yaml().compose(body)
    except YAMLError as exc:
        raise InvalidFile(f"{display}: invalid YAML: {exc}") from None
    if not isinstance(root, MappingNode):
        return None
    seq = next((v for k, v in root.value if isinstance(k, ScalarNode) and k.value == "tasks"), None)
    if not isinstance(seq, SequenceNode) or seq.flow_style or not seq.value:
        return None
    lines = _LINES.findall(text)
    spans: dict[str, Span] = {}
    for item in seq.value:
        if not isinstance(item, MappingNode):
            return None
        ident = next((v.value for k, v in item.value
                      if isinstance(k, ScalarNode) and k.value == "id" and isinstance(v, ScalarNode)), None)
        if not isinstance(ident, str) or ident in spans:
            return None
        first = item.start_mark.line
        head = lines[first][: item.start_mark.column]
        while not head.lstrip().startswith("-"):
            first -= 1
            if first < 0:
                return None
            head = lines[first].rstrip("\r\n")
        spans[ident] = Span(first, _last_line(item), head.index("-"))
    if len({s.column for s in spans.values()}) != 1:
        return None
    ordered = sorted(spans.values(), key=lambda s: s.first)
    if any(a.last >= b.first for a, b in zip(ordered, ordered[1:])):
        return None  # two tasks share a line
    key_line = next(k.start_mark.line for k, v in root.value if v is seq)
    return Layout(lines, spans, key_line)


def _newline(layout: Layout) -> str:
    return "\r\n" if layout.lines and layout.lines[0].endswith("\r\n") else "\n"


def _wrapped(layout: Layout, span: Span) -> str:
    """The task's lines under a `tasks:` key of their own: a small document laid out as the
    file is (the dash where it was), for the round-trip editor."""
    own = layout.lines[span.first: span.last + 1]
    if not own[-1].endswith(("\n", "\r")):
        own = own[:-1] + [own[-1] + _newline(layout)]
    return "tasks:" + ("\r\n" if own[0].endswith("\r\n") else "\n") + "".join(own)


def _body(dumped: str) -> list[str]:
    """The lines of a dumped `tasks:` document after the key."""
    return _LINES.findall(dumped)[1:]


def task_text(layout: Layout, task_id: str) -> str:
    span = layout.spans[task_id]
    return "".join(layout.lines[span.first: span.last + 1])


def edit(layout: Layout, task_id: str, change: Callable[[Any], None], display: str) -> str:
    """The file with one task changed by `change(task)` (a round-trip mapping: comments inside
    the task are kept); every other line as it was."""
    span = layout.spans[task_id]
    own = _wrapped(layout, span)
    doc = yamlio.rt_load(own, display)
    change(doc["tasks"][0])
    new = _body(yamlio.rt_dump(doc, like=own))
    return "".join(layout.lines[: span.first] + new + layout.lines[span.last + 1:])


def remove(layout: Layout, task_id: str) -> str | None:
    """The file without the task's lines (None when it is the only task: the list would have
    to become `[]`, which the round-trip editor writes)."""
    if len(layout.spans) == 1:
        return None
    span = layout.spans[task_id]
    return "".join(layout.lines[: span.first] + layout.lines[span.last + 1:])


def append(layout: Layout, tasks: list[Mapping[str, Any]]) -> str:
    """The file with tasks added after the last one, laid out as the last one is (blank lines
    and comments after the last task stay after the new ones)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    last = max(layout.spans.values(), key=lambda s: s.first)
    like = _wrapped(layout, last)
    flow = _flow_lists(yamlio.rt_load(like, "the last task")["tasks"][0])
    doc = CommentedMap([("tasks", CommentedSeq(_block(t, flow) for t in tasks))])
    new = _body(yamlio.rt_dump(doc, like=like))
    lines = list(layout.lines)
    if not lines[last.last].endswith(("\n", "\r")):
        lines[last.last] += _newline(layout)
    return "".join(lines[: last.last + 1] + new + lines[last.last + 1:])


def _flow_lists(task: Any) -> bool:
    """Whether a task writes its lists `[a, b]` (as the ones after it will be)."""
    from ruamel.yaml.comments import CommentedSeq

    seqs = [v for v in task.values() if isinstance(v, CommentedSeq)] if isinstance(task, Mapping) else []
    return bool(seqs) and all(v.fa.flow_style() for v in seqs)


def _block(value: Any, flow_lists: bool = False) -> Any:
    """Plain dicts and lists as ruamel's collections: mappings in block style, lists of
    scalars as the task before writes them."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, Mapping):
        return CommentedMap((k, _block(v, flow_lists)) for k, v in value.items())
    if isinstance(value, list):
        seq = CommentedSeq(_block(v, flow_lists) for v in value)
        if flow_lists and not any(isinstance(v, (Mapping, list)) for v in value):
            seq.fa.set_flow_style()
        return seq
    return value


# ----- the index of one version of a file: an edit without parsing it again ------------------

INDEX_VERSION = 1


@dataclass(frozen=True)
class Index:
    """Where each task's text is in one version of a plan file (named by `digest`): character
    offsets of whole lines, in file order, so a later edit is spliced without composing the
    file again. `checked`: that version passed every check `validate` makes of a plan file;
    `outside`: then, at least every dependency on another plan and every ADR it names (what
    other files decide, checked again at each edit)."""

    digest: str
    ids: list[str]
    starts: list[int]  # [start, end) of each task's lines, line ends included
    ends: list[int]
    checked: bool = False
    outside: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())  # (dependencies, ADRs)

    def span(self, task_id: str) -> tuple[int, int] | None:
        try:
            at = self.ids.index(task_id)
        except ValueError:
            return None
        return self.starts[at], self.ends[at]


def digest_of(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def index_of(layout: Layout, digest: str) -> Index:
    offsets = [0]
    for line in layout.lines:
        offsets.append(offsets[-1] + len(line))
    ordered = sorted(layout.spans.items(), key=lambda item: item[1].first)
    return Index(digest, [ident for ident, _ in ordered], [offsets[s.first] for _, s in ordered],
                 [offsets[s.last + 1] for _, s in ordered])


def to_cache(index: Index) -> dict[str, Any]:
    return {"index_version": INDEX_VERSION, "digest": index.digest, "ids": index.ids,
            "starts": index.starts, "ends": index.ends, "checked": index.checked,
            "outside": [list(index.outside[0]), list(index.outside[1])]}


def from_cache(entry: Mapping[str, Any], digest: str) -> Index | None:
    """The cached index when it is of this version of the file (anything else: None)."""
    if entry.get("index_version") != INDEX_VERSION or entry.get("digest") != digest:
        return None
    ids, starts, ends, outside = (entry.get(k) for k in ("ids", "starts", "ends", "outside"))
    if not (isinstance(ids, list) and isinstance(starts, list) and isinstance(ends, list) and ids
            and len(ids) == len(starts) == len(ends) and isinstance(outside, list) and len(outside) == 2):
        return None
    return Index(digest, ids, starts, ends, entry.get("checked") is True,
                 (tuple(outside[0]), tuple(outside[1])))


def _text_newline(text: str) -> str:
    """The file's line end, as `_newline` finds it (that of its first line)."""
    first = text.find("\n")
    return "\r\n" if first > 0 and text[first - 1] == "\r" else "\n"


def _own(text: str, start: int, end: int) -> str:
    """A task's lines under a `tasks:` key of their own, as `_wrapped` makes them."""
    own = text[start:end]
    if not own.endswith(("\n", "\r")):
        own += _text_newline(text)
    first_end = own.find("\n")
    return "tasks:" + ("\r\n" if first_end > 0 and own[first_end - 1] == "\r" else "\n") + own


class Splice(NamedTuple):
    """The new file is old[:start] + inserted + old[end:] (characters)."""

    start: int
    end: int
    inserted: str


def splice_edit(text: str, index: Index, task_id: str, change: Callable[[Any], None],
                display: str) -> tuple[str, str, Index, Splice]:
    """`edit` over an index: the new file, the task's new lines as a document of their own,
    the new file's index (not yet checked) and the splice."""
    at = index.ids.index(task_id)
    start, end = index.starts[at], index.ends[at]
    own = _own(text, start, end)
    doc = yamlio.rt_load(own, display)
    change(doc["tasks"][0])
    dumped = yamlio.rt_dump(doc, like=own)
    new = "".join(_body(dumped))
    out = text[:start] + new + text[end:]
    delta = len(new) - (end - start)
    starts = index.starts[: at + 1] + [s + delta for s in index.starts[at + 1:]]
    ends = index.ends[:at] + [start + len(new)] + [e + delta for e in index.ends[at + 1:]]
    return (out, dumped, Index(digest_of(out), list(index.ids), starts, ends, False, index.outside),
            Splice(start, end, new))


def splice_append(text: str, index: Index, task: Mapping[str, Any]) -> tuple[str, str, Index, Splice]:
    """`append` of one task over an index: the new file, the task's lines as a document of
    their own, the new file's index (not yet checked) and the splice."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    end = index.ends[-1]
    like = _own(text, index.starts[-1], end)
    flow = _flow_lists(yamlio.rt_load(like, "the last task")["tasks"][0])
    doc = CommentedMap([("tasks", CommentedSeq([_block(task, flow)]))])
    dumped = yamlio.rt_dump(doc, like=like)
    new = "".join(_body(dumped))
    head = text[:end]
    if not head.endswith(("\n", "\r")):
        head += _text_newline(text)
    out = head + new + text[end:]
    return (out, dumped, Index(digest_of(out), [*index.ids, str(task["id"])], [*index.starts, len(head)],
                               [*index.ends, len(head) + len(new)], False, index.outside),
            Splice(end, end, head[end:] + new))
