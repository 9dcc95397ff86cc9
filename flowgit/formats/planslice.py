"""A task's text in a plan file, found with the fast (C) composer and spliced in place: editing,
removing or adding one task rewrites that task's lines only, and every other byte of the file
(comments, layout, quoting, line endings) stays as it was. A file this cannot read line by line
(a flow-style task list, unusual line breaks) gets None, and the caller uses the round-trip
editor instead."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping, NamedTuple, Sequence

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


# ----- the same layout found line by line (a first edit of a big plan: no composer) ---------

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*:(?= |$)")
_ITEM = re.compile(r"( *)-( +)")
_OPEN_END = re.compile(r":[ ]*(?:#.*)?$")
_BLOCK = re.compile(r"( *)(?:- +)?([A-Za-z_][A-Za-z0-9_-]*): +[|>][+-]?(?: +#.*)?$")


def _closed(value: str) -> int | None:
    """Where a quoted scalar or flow collection starting `value` ends on this line (None:
    it does not, or it holds what would make a line-by-line reading unsure)."""
    first = value[0]
    if first == "'":
        at = 1
        while (at := value.find("'", at)) >= 0:
            if value[at + 1: at + 2] != "'":
                return at + 1
            at += 2
        return None
    if first == '"':
        at = 1
        while at < len(value):
            if value[at] == "\\":
                at += 2
            elif value[at] == '"':
                return at + 1
            else:
                at += 1
        return None
    depth = 0
    for at, ch in enumerate(value):
        if ch in "\'\"#":
            return None
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return at + 1
    return None


def _plain_line(line: str) -> bool:
    """Whether every node on this line ends on it (the line holds no start of a block scalar,
    an alias, an anchor, a tag, a complex key, or a quoted or flow node going on to the next)."""
    body = line.lstrip(" ")
    if not body or body[0] == "#":
        return True
    while body[:2] == "- ":
        body = body[2:].lstrip(" ")
    if body == "-":
        return False
    key = _KEY.match(body)
    if key:
        body = body[key.end():].lstrip(" ")
    if not body or body[0] == "#":
        return True
    if body[0] in "|>*&!%@`?,]}-":
        return body[0] == "-" and body[:2] != "- " and body != "-"
    if body[0] not in "'\"[{":
        return True
    end = _closed(body)
    if end is None:
        return False
    rest = body[end:]
    return not rest.strip() or (rest[0] == " " and rest.lstrip(" ")[0] == "#")


def scan(text: str, ids: Sequence[str], fast: bool = True) -> Layout | None:
    """The layout `read` finds, found line by line for a file laid out plainly, and only when
    the tasks it finds are `ids` (the tasks of this very version, as a parse gave them), in
    order. None whenever a line could be read another way (a quoted string or a flow list
    going on to the next line, an alias, a tag, a tab, a document marker, a null at a task's
    end): then `read`. `fast`: a task list of plain lines is read by regular expressions."""
    if _ODD_BREAKS.search(text) or "\t" in text or not ids:
        return None
    lines = _LINES.findall(text)
    if lines and not lines[-1].strip(" "):
        return None  # spaces after the last line break: a block scalar (`|+`) may or may not own them
    key_line = None
    in_block = False  # the indented lines of a top-level key's block scalar
    started = False
    for n, line in enumerate(lines):
        line = line.rstrip("\r\n").lstrip("\ufeff") if n == 0 else line.rstrip("\r\n")
        if line.startswith(("---", "...", "%")):
            return None
        if in_block and (not line.strip() or line[0] == " "):
            continue
        in_block = False
        if not line.strip() or line.lstrip(" ")[0] == "#":
            continue
        if line[0] == " " and not started:
            return None  # the top-level mapping is indented
        started = True
        if line[0] != " ":
            key = _KEY.match(line)
            if key is None:
                return None
            value = line[key.end():].lstrip(" ")
            if line[: key.end()] == "tasks:":
                if value and value[0] != "#":
                    return None
                key_line = n
                break
            if value[:1] in ("|", ">"):
                in_block = True
                continue
        if not _plain_line(line):
            return None
    if key_line is None:
        return None
    spans = _plain_spans(text, lines, key_line) if fast else None
    if spans is None:
        spans = _spans(lines, key_line)
    if spans is None or list(spans) != list(ids):
        return None
    return Layout(lines, spans, key_line)


# a line that is not blank, a comment, or keys and one value that ends on the line
_NOT_PLAIN = re.compile(
    r"^(?![ ]*(?:#[^\n]*)?\r?$"
    r"|[ ]*(?:-[ ]+)*(?:[A-Za-z_][A-Za-z0-9_-]*:(?:[ ]+|(?=\r?$)))?"
    r"(?:[^\s'\"\[{|>*&!%@`?,\]}#\-](?:[^\n:]|:(?![ ]|\r?$))*|\[[^'\"#\[\]{}\n]*\][ ]*)?\r?$)", re.M)
_SHALLOW = "^ {0,%d}[^ \r\n#][^\n]*"


def _plain_spans(text: str, lines: list[str], key_line: int) -> dict[str, Span] | None:
    """`_spans` for a task list whose every line is plain, each task's id on its dash line:
    found with regular expressions (in C) rather than line by line. None: read line by line.
    The ids are not checked here: the caller compares them with the parsed plan's."""
    at = sum(len(line) for line in lines[: key_line + 1])
    head = re.compile(r"^( *)-( +)id:", re.M).search(text, at)
    if head is None:
        return None
    column = len(head.group(1))
    line = key_line + 1 + text.count("\n", at, head.start())
    if any(lines[n].strip(" \r\n") and lines[n].lstrip(" ")[0] != "#" for n in range(key_line + 1, line)):
        return None
    dash = " " * column + "-"
    items: list[tuple[int, str]] = []  # each dash line: its number, its text
    end, pos = len(text), head.start()
    for found in re.compile(_SHALLOW % column, re.M).finditer(text, head.start()):
        here = found.group()
        line += text.count("\n", pos, found.start())
        pos = found.start()
        if not here.startswith(dash) or here[column + 1: column + 2] != " ":
            end = pos
            break
        items.append((line, here))
    if _NOT_PLAIN.search(text, head.start(), end):
        return None
    spans: dict[str, Span] = {}
    after = line if end < len(text) else len(lines)
    for k in range(len(items) - 1, -1, -1):
        first, here = items[k]
        rest = here[column + 1:].lstrip(" ")
        if not rest.startswith("id: "):
            return None
        last = after - 1
        after = first
        while last > first and (not lines[last].strip() or lines[last].lstrip(" ")[0] == "#"):
            last -= 1
        tail = lines[last].rstrip(" \r\n")
        if tail.endswith(":") or ("#" in tail and _OPEN_END.search(tail)):
            return None
        spans[rest[4:].split(" #", 1)[0].strip(" \r")] = Span(first, last, column)
    if len(spans) != len(items):
        return None
    return dict(reversed(spans.items()))


def _spans(lines: list[str], key_line: int) -> dict[str, Span] | None:
    """Where each task's lines are, read line by line from the line after `tasks:`."""
    bare = [line.rstrip("\r\n") for line in lines]
    spans: dict[str, Span] = {}
    column = mapping = -1
    first = last = -1
    ident: str | None = None
    block = inner = -1  # a block scalar being read: its key's column, its text's indentation
    open_end = True  # whether the last line read may end in a null (`key:`)

    def close() -> bool:
        if ident is None or ident in spans or (open_end and _OPEN_END.search(bare[last])):
            return False
        spans[ident] = Span(first, last, column)
        return True

    for n in range(key_line + 1, len(bare)):
        line = bare[n]
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if block >= 0:
            if not body:
                continue
            if inner < 0:
                if indent <= block:
                    return None  # an empty block scalar
                inner = indent
            if indent >= inner:
                continue
            block, last, open_end = -1, n - 1, False  # its blank lines after it are its own
        if not body or body[0] == "#":
            continue
        item = _ITEM.match(line)
        if column < 0:
            if item is None:
                return None
            column = indent
        if indent < column or (indent == column and item is None):
            break  # the list ended: the next top-level key
        header = _BLOCK.match(line)
        if header is None and not _plain_line(line):
            return None
        if indent == column:
            assert item is not None
            if first >= 0 and not close():
                return None
            first, ident = n, None
            mapping = item.end()
            rest = line[mapping:]
            if rest.startswith("id:"):
                ident = _id_value(rest)
                if ident is None:
                    return None
        elif indent == mapping and body.startswith("id:"):
            if ident is not None:
                return None
            ident = _id_value(body)
            if ident is None:
                return None
        last, open_end = n, True
        if header is not None:
            block, inner = header.start(2), -1
    if block >= 0:
        if inner < 0:
            return None
        last, open_end = len(bare) - 1, False
    if first < 0 or not close():
        return None
    return spans



def _id_value(rest: str) -> str | None:
    """A task id written plainly after `id:` (anything else: None)."""
    from flowgit.ids import is_valid_id

    value = rest[3:]
    if value[:1] != " ":
        return None
    value = value.split(" #", 1)[0].strip(" ")
    return value if is_valid_id(value) else None


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


_BLOCK_HEADER = re.compile(r"[:-][ \t]+[|>][-+0-9]*[ \t]*(?:#.*)?$", re.M)


def unterminated_block(text: str) -> bool:
    """Whether the file may end inside a `|` or `>` block without a final line break: ending
    that line, as a splice after the last task does, would change the block's text (a clipped
    block gains its line break), so such a file takes the round-trip editor."""
    return bool(text) and not text.endswith(("\n", "\r")) and _BLOCK_HEADER.search(text) is not None


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
    out, owns, new_index, splice = splice_append_many(text, index, [task])
    return out, owns[0], new_index, splice


def splice_append_many(text: str, index: Index, tasks: Sequence[Mapping[str, Any]],
                       ) -> tuple[str, list[str], Index, Splice]:
    """`append` of tasks over an index (the same bytes): the new file, each task's lines as a
    document of its own, the new file's index (not yet checked) and the splice."""
    from flowgit.formats.plaindump import dump_tasks

    end = index.ends[-1]
    like = _own(text, index.starts[-1], end)
    dumped = dump_tasks(like, tasks)
    if dumped is None:
        from ruamel.yaml.comments import CommentedMap, CommentedSeq

        flow = _flow_lists(yamlio.rt_load(like, "the last task")["tasks"][0])
        doc = CommentedMap([("tasks", CommentedSeq(_block(t, flow) for t in tasks))])
        dumped = yamlio.rt_dump(doc, like=like)
    body = _body(dumped)
    key = _LINES.findall(dumped)[0]
    dash = body[0][: len(body[0]) - len(body[0].lstrip(" ")) + 1] if body else "-"
    chunks: list[list[str]] = []
    for line in body:
        if line.startswith(dash) or not chunks:
            chunks.append([])
        chunks[-1].append(line)
    head = text[:end]
    if not head.endswith(("\n", "\r")):
        head += _text_newline(text)
    new = "".join(body)
    out = head + new + text[end:]
    starts, ends, at = list(index.starts), list(index.ends), len(head)
    for chunk in chunks:
        starts.append(at)
        at += sum(len(line) for line in chunk)
        ends.append(at)
    ids = [*index.ids, *(str(t["id"]) for t in tasks)]
    if len(chunks) != len(tasks):  # not one run of lines per task: no index (the full check)
        starts, ends, ids = [], [], []
    return (out, [key + "".join(chunk) for chunk in chunks],
            Index(digest_of(out), ids, starts, ends, False, index.outside), Splice(end, end, head[end:] + new))
