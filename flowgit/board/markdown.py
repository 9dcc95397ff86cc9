"""The pull request comment (`flowgit diff --format markdown`) as HTML, for the board.

Only the Markdown that `formats.plandiff.render_markdown` writes is understood: headings,
tables, lists, bold lines, italic lines, inline code, backslash escapes, <details> blocks and
the Mermaid block (which the caller draws as SVG instead). Every piece of text is escaped
here; nothing of the input passes through as markup."""
from __future__ import annotations

import html
import re
from typing import Callable

from flowgit.board.html import esc

_DETAILS = re.compile(r"<details( open)?><summary>(.*)</summary>\Z")
_ESCAPABLE = set("\\`*_[]|~")


def inline(text: str) -> str:
    """Code spans, **bold** and escapes; everything else is text (entities decoded, then
    escaped again, so `&lt;` written by the Markdown renderer shows as `<`)."""
    out: list[str] = []
    buf: list[str] = []
    bold = False

    def flush() -> None:
        if buf:
            out.append(esc(html.unescape("".join(buf))))
            buf.clear()

    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            buf.append(text[i + 1])
            i += 2
            continue
        if ch == "`":
            end = text.find("`", i + 1)
            if end != -1:
                flush()
                out.append(f"<code>{esc(text[i + 1:end])}</code>")
                i = end + 1
                continue
        if text.startswith("**", i):
            flush()
            out.append("</strong>" if bold else "<strong>")
            bold = not bold
            i += 2
            continue
        buf.append(ch)
        i += 1
    flush()
    if bold:
        out.append("</strong>")
    return "".join(out)


def _cells(line: str) -> list[str]:
    """A table row's cells: split on `|` outside code spans and escapes."""
    cells: list[str] = []
    cur: list[str] = []
    code = False
    i = 0
    body = line.strip()
    if body.startswith("|"):
        body = body[1:]
    if body.endswith("|") and not body.endswith("\\|"):
        body = body[:-1]
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            cur.append(body[i:i + 2])
            i += 2
            continue
        if ch == "`":
            code = not code
        if ch == "|" and not code:
            cells.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    cells.append("".join(cur).strip())
    return cells


def to_html(markdown: str, mermaid: Callable[[], str]) -> str:
    lines = markdown.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        if line.startswith("```"):
            lang = line[3:].strip()
            block = []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                block.append(lines[i])
                i += 1
            i += 1
            if lang == "mermaid":
                out.append(mermaid())
            else:
                out.append(f"<pre>{esc(chr(10).join(block))}</pre>")
            continue
        m = _DETAILS.match(line)
        if m:
            out.append(f'<details{" open" if m.group(1) else ""}><summary>{inline(m.group(2))}</summary>')
            i += 1
            continue
        if line.strip() == "</details>":
            out.append("</details>")
            i += 1
            continue
        if line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            level = max(3, level)  # the page's own headings are above the comment's
            out.append(f"<h{level}>{inline(line.lstrip('#').strip())}</h{level}>")
            i += 1
            continue
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(_cells(lines[i]))
                i += 1
            head, aligns, body = rows[0], rows[1] if len(rows) > 1 else [], rows[2:]
            right = [a.endswith(":") for a in aligns]

            def cls(k: int) -> str:
                return ' class="num"' if k < len(right) and right[k] else ""
            thead = "".join(f'<th scope="col"{cls(k)}>{inline(c)}</th>' for k, c in enumerate(head))
            tbody = "".join("<tr>" + "".join(f"<td{cls(k)}>{inline(c)}</td>" for k, c in enumerate(r))
                            + "</tr>" for r in body)
            out.append(f'<div class="tablewrap"><table><thead><tr>{thead}</tr></thead>'
                       f'<tbody>{tbody}</tbody></table></div>')
            continue
        if line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
            continue
        stripped = line.strip()
        if len(stripped) > 2 and stripped.startswith("_") and stripped.endswith("_"):
            out.append(f"<p><em>{inline(stripped[1:-1])}</em></p>")
        else:
            out.append(f"<p>{inline(stripped)}</p>")
        i += 1
    return "\n".join(out)
