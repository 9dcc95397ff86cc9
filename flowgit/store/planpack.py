"""A big plan's new version stored as a delta against the one before (issue 17, ADR 0012).

Git stores every version of a file whole until `gc` packs them: a 50,000-task plan.yaml is a
540 KB zlib blob, so each `task add` grew `.git` by that much. Git keeps deltas only inside a
pack, against a base in the same pack. So flowgit keeps the versions it writes of one big plan
in a pack of its own: the first version of the chain whole, each later one a delta, made from
the splice itself (copy the lines before the task, insert the task's new lines, copy the rest).
Each edit writes that pack again (the old entries copied byte for byte, the new delta after
them) with its index, then removes the previous one: `.git` grows by the delta. The pack is
written before the commit, so git finds the new blob there and writes no loose copy.

The whole plan is written once per chain, and a chain goes on: past `DEPTH` deltas in a row the
next version is a delta against the chain's first (the splices since it, composed: `ops`), and
when the version edited is not the chain's last (a pull brought it) the new version is a delta
against the last through what the pull changed (a common beginning and end). The chain's pack is
marked `.keep`, so `gc` leaves it alone. The one whole version a new chain writes replaces its
loose copy (`git prune-packed` does the same). A new chain starts only when there is none, its
pack is gone or not the one recorded, more than `REBASE` new bytes came since its first version,
or it holds `ENTRIES` versions. Nothing here is needed for correctness: whatever fails, the
commit writes the blob as git always does."""
from __future__ import annotations

import hashlib
import os
import re
import struct
import zlib
from pathlib import Path
from typing import Any, AnyStr

from flowgit.store.repo import FlowRepo

BIG = 1024 * 1024  # smaller plans: a loose blob costs less than this bookkeeping
DEPTH = 32  # deltas in a row; the next one is made against the chain's first version
REBASE = 256 * 1024  # new bytes since the chain's first version past which a new chain starts
ENTRIES = 4096  # versions in one pack before a new chain starts (each edit writes it again)
BLOB, REF_DELTA = 3, 7

# A chain's pack is marked to keep: `gc` leaves it (and its deltas) alone, so the chain goes on
# after a gc instead of a new one writing the whole plan again. A new chain unmarks the last.
KEEP = b"flowgit: a big plan's chain of versions (ADR 0012)\n"
_KEEP_OK = re.compile(r"[0-9a-f]{40}\Z")
Ops = list["tuple[int, int] | bytes"]  # a text as copies (offset, size) of another and new bytes
_BLOCK = 1 << 16
_READ: dict[str, bytes] = {}  # blob id -> bytes this process read (store/plancatch.py)


def blob_id(data: bytes) -> bytes:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).digest()


def tip_blob(repo: FlowRepo, plan_id: str, sha256: str) -> str | None:
    """The blob id of the version the plan's chain ends with, when its sha256 is `sha256`."""
    from flowgit.store.kept import kept as kept_store

    chain = kept_store(repo).entry(f"pack-{plan_id}")
    tip = chain.get("tip")
    return tip if chain.get("tip_sha256") == sha256 and isinstance(tip, str) and len(tip) == 40 else None


def common_ends(a: AnyStr, b: AnyStr) -> tuple[int, int]:
    """(p, s): `a` and `b` begin with the same `p` characters and end with the same `s`, and
    p + s is at most the shorter length (compared in blocks: in C, not character by character)."""
    n = min(len(a), len(b))
    p = 0
    while p < n and a[p: p + _BLOCK] == b[p: p + _BLOCK]:
        p += _BLOCK
    p = min(p, n)
    lo, hi = p, min(p + _BLOCK, n)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[p:mid] == b[p:mid]:
            lo = mid
        else:
            hi = mid - 1
    p = lo
    la, lb, room = len(a), len(b), n - lo
    s = 0
    while s < room and a[la - s - min(_BLOCK, room - s): la - s] == b[lb - s - min(_BLOCK, room - s): lb - s]:
        s += min(_BLOCK, room - s)
    lo, hi = s, min(s + _BLOCK, room)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[la - mid: la - s] == b[lb - mid: lb - s]:
            lo = mid
        else:
            hi = mid - 1
    return p, lo


def known_bytes(blob: str, data: bytes) -> None:
    """This process read blob `blob` (a chain's tip, read again after a pull): no git needed."""
    _READ.clear()
    _READ[blob] = data


def _pulled(repo: FlowRepo, tip: str, old: bytes, spliced: Ops) -> Ops | None:
    """The new version as copies of the chain's tip, when `old` (the version edited) is not
    the tip (a pull brought it): the tip and `old` compared for a common beginning and end."""
    from flowgit import git

    tip_bytes = _READ.pop(tip, None)  # read by the catch-up, its sha256 checked (not kept on)
    if tip_bytes is None:
        tip_bytes = git.cat_blobs(repo.root, [tip]).get(tip)
        if tip_bytes is None or blob_id(tip_bytes).hex() != tip:
            return None
    p, s = common_ends(tip_bytes, old)
    if len(old) - s - p > REBASE:
        return None
    between: Ops = [(0, p), old[p: len(old) - s], (len(tip_bytes) - s, s)]
    return compose(spliced, between)


def compose(outer: Ops, inner: Ops) -> Ops:
    """`outer` (a text as copies of X) with X as `inner` says (copies of Y): copies of Y."""
    from bisect import bisect_right

    starts, at = [], 0
    for op in inner:
        starts.append(at)
        at += len(op) if isinstance(op, bytes) else op[1]
    out: Ops = []
    for op in outer:
        if isinstance(op, bytes):
            out.append(op)
            continue
        offset, size = op
        k = bisect_right(starts, offset) - 1
        while size > 0:
            part = inner[k]
            skip = offset - starts[k]
            if isinstance(part, bytes):
                take = min(len(part) - skip, size)
                out.append(part[skip: skip + take])
            else:
                take = min(part[1] - skip, size)
                out.append((part[0] + skip, take))
            offset, size, k = offset + take, size - take, k + 1
    merged: Ops = []
    for op in out:
        last = merged[-1] if merged else None
        if isinstance(op, bytes):
            if not op:
                continue
            if isinstance(last, bytes):
                merged[-1] = last + op
                continue
        elif op[1] == 0:
            continue
        elif isinstance(last, tuple) and last[0] + last[1] == op[0]:
            merged[-1] = (last[0], last[1] + op[1])
            continue
        merged.append(op)
    return merged


def ops_delta(ops: Ops, base: int, size: int) -> bytes:
    """Git's delta making the text `ops` describes (`size` bytes) from a base of `base` bytes."""
    if any(op[0] + op[1] > base for op in ops if isinstance(op, tuple)):
        raise ValueError("a copy past the end of the base")
    out = bytearray(_varint(base) + _varint(size))
    for op in ops:
        if isinstance(op, bytes):
            for i in range(0, len(op), 127):
                chunk = op[i: i + 127]
                out.append(len(chunk))
                out += chunk
        else:
            out += _copy(*op)
    return bytes(out)


def _literal(ops: Ops) -> int:
    return sum(len(op) for op in ops if isinstance(op, bytes))


def _ops(kept: Any) -> Ops | None:
    """Ops as the kept store holds them (None: not ops this version wrote)."""
    if not isinstance(kept, list):
        return None
    out: Ops = []
    for op in kept:
        if isinstance(op, bytes):
            out.append(op)
        elif isinstance(op, list) and len(op) == 2 and all(isinstance(x, int) and x >= 0 for x in op):
            out.append((op[0], op[1]))
        else:
            return None
    return out


def _kept_ops(ops: Ops | None) -> list[Any] | None:
    if ops is None or _literal(ops) > REBASE:
        return None
    return [op if isinstance(op, bytes) else list(op) for op in ops]


def _drop_loose(objects: Path, hex_id: str) -> None:
    """Remove the loose copy of an object a pack now holds (`git prune-packed` does the same)."""
    try:
        (objects / hex_id[:2] / hex_id[2:]).unlink()
    except OSError:
        pass


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _entry_head(kind: int, size: int) -> bytes:
    out = bytearray()
    byte = (kind << 4) | (size & 0x0F)
    size >>= 4
    while size:
        out.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    out.append(byte)
    return bytes(out)


def _copy(offset: int, size: int) -> bytes:
    """Delta instructions copying `size` bytes of the base from `offset`."""
    out = bytearray()
    while size > 0:
        n = min(size, 0xFFFFFF)
        cmd, args = 0x80, bytearray()
        for i in range(4):
            part = (offset >> (8 * i)) & 0xFF
            if part:
                cmd |= 1 << i
                args.append(part)
        for i in range(3):
            part = (n >> (8 * i)) & 0xFF
            if part:
                cmd |= 1 << (4 + i)
                args.append(part)
        out.append(cmd)
        out += args
        offset += n
        size -= n
    return bytes(out)


def splice_delta(old: bytes, start: int, end: int, new: bytes) -> bytes:
    """Git's delta turning `old` into old[:start] + new + old[end:]."""
    out = bytearray(_varint(len(old)) + _varint(start + len(new) + len(old) - end))
    out += _copy(0, start)
    for i in range(0, len(new), 127):
        chunk = new[i: i + 127]
        out.append(len(chunk))
        out += chunk
    out += _copy(end, len(old) - end)
    return bytes(out)


def _pack_dir(repo: FlowRepo) -> Path:
    return repo.dirs.common_dir / "objects" / "pack"


def _sha1_repository(repo: FlowRepo) -> bool:
    """Only SHA-1 repositories: a SHA-256 one packs its objects otherwise."""
    try:
        config = (repo.dirs.common_dir / "config").read_bytes().lower()
    except OSError:
        return False
    return b"objectformat" not in config or b"sha256" not in config


def _index(entries: list[tuple[bytes, int, int]], pack_sum: bytes) -> bytes:
    """A version 2 pack index of (object id, CRC-32, offset) entries."""
    ordered = sorted(entries)
    fanout = [0] * 256
    for oid, _, _ in ordered:
        fanout[oid[0]] += 1
    total, table = 0, bytearray()
    for count in fanout:
        total += count
        table += struct.pack(">I", total)
    body = bytearray(b"\377tOc" + struct.pack(">I", 2) + table)
    body += b"".join(oid for oid, _, _ in ordered)
    body += b"".join(struct.pack(">I", crc) for _, crc, _ in ordered)
    body += b"".join(struct.pack(">I", offset) for _, _, offset in ordered)
    body += pack_sum
    return bytes(body + hashlib.sha1(body).digest())


def store_version(repo: FlowRepo, plan_id: str, old: bytes, start: int, end: int, new_lines: bytes,
                  old_sha256: str | None = None, new_sha256: str | None = None,
                  old_blob: str | None = None) -> None:
    """Before committing old[:start] + new_lines + old[end:] as the plan's new version: that
    blob written into the plan's own pack as a delta against `old` (see the module docstring).
    `old_sha256`, `new_sha256`: the versions' sha256 when known (the chain's tip is then known
    to be `old` without hashing it again); `old_blob`: the blob id of `old` when known."""
    if len(old) < BIG or not _sha1_repository(repo):
        return
    try:
        _store(repo, plan_id, old, start, end, new_lines, old_sha256, new_sha256, old_blob)
    except (OSError, ValueError, struct.error, zlib.error):
        pass  # the commit writes the blob whole, as git always does


def _store(repo: FlowRepo, plan_id: str, old: bytes, start: int, end: int, new_lines: bytes,
           old_sha256: str | None, new_sha256: str | None, old_blob: str | None = None) -> None:
    from flowgit.store.kept import kept as kept_store

    folder = _pack_dir(repo)
    if (folder / "multi-pack-index").exists():
        return  # a multi-pack index names the packs: removing one is git's business then
    kept = kept_store(repo)
    key = f"pack-{plan_id}"
    chain: dict[str, Any] = kept.entry(key)
    tip = chain.get("tip")
    if old_sha256 is not None and chain.get("tip_sha256") == old_sha256 and isinstance(tip, str) and len(tip) == 40:
        base = bytes.fromhex(tip)  # the version the chain ends with (same sha256: same bytes)
    elif old_blob is not None and len(old_blob) == 40:
        base = bytes.fromhex(old_blob)
    else:
        base = blob_id(old)
    new = old[:start] + new_lines + old[end:]
    new_id = blob_id(new)
    if new == old:
        return
    spliced: Ops = [(0, start), new_lines, (end, len(old) - end)]
    name = chain.get("name")
    entries = [(bytes(o), c, off) for o, c, off in chain.get("entries") or []]
    old_pack = folder / f"pack-{name}.pack" if isinstance(name, str) else None
    body = b""
    over_tip = None  # the new version as copies of the chain's tip and new bytes
    if old_pack is not None and old_pack.exists() and entries and isinstance(tip, str) and len(entries) < ENTRIES:
        over_tip = spliced if tip == base.hex() else _pulled(repo, tip, old, spliced)
    if over_tip is not None:
        assert old_pack is not None and isinstance(tip, str)
        data = old_pack.read_bytes()
        body = data[12:-20]
        intact = data[:4] == b"PACK" and struct.unpack(">II", data[4:12]) == (2, len(entries)) \
            and data[-20:].hex() == name and hashlib.sha1(data[:-20]).digest() == data[-20:]
        if not intact:  # not the pack this chain wrote: start another, leave that one to git
            old_pack, entries, over_tip = None, [], None
    else:
        old_pack, entries = None, []
    if any(oid == new_id for oid, _, _ in entries):
        return  # a version the chain has (an edit undone)
    depth, over_root = 1, spliced  # type: int, Ops | None
    if over_tip is not None:
        assert isinstance(tip, str)
        depth = int(chain.get("depth") or DEPTH) + 1
        kept_ops = _ops(chain.get("ops"))
        over_root = compose(over_tip, kept_ops) if kept_ops is not None else None
        tip_len, root_len = chain.get("tip_len"), chain.get("root_len")
        if depth <= DEPTH and isinstance(tip_len, int):
            base, delta = bytes.fromhex(tip), ops_delta(over_tip, tip_len, len(new))
        elif over_root is not None and _literal(over_root) <= REBASE and isinstance(root_len, int):
            base, delta, depth = entries[0][0], ops_delta(over_root, root_len, len(new)), 1  # the chain's first
        else:
            old_pack, entries, over_root, depth = None, [], spliced, 1
            body = b""
    fresh = not entries
    if fresh:  # a new chain: the version before, whole
        packed = zlib.compress(old, 1)
        head = _entry_head(BLOB, len(old))
        entries = [(base, zlib.crc32(head + packed), 12)]
        body = head + packed
        delta = splice_delta(old, start, end, new_lines)
    raw = _entry_head(REF_DELTA, len(delta)) + base + zlib.compress(delta)
    entries.append((new_id, zlib.crc32(raw), 12 + len(body)))
    content = b"PACK" + struct.pack(">II", 2, len(entries)) + body + raw
    pack_sum = hashlib.sha1(content).digest()
    pack_name = pack_sum.hex()
    # no .pack/.idx ending until renamed: git takes any *.idx there for a pack's index
    tmp_pack, tmp_idx = folder / f"tmp_flowgit_pack_{os.getpid()}", folder / f"tmp_flowgit_idx_{os.getpid()}"
    try:
        _durable(tmp_pack, content + pack_sum)
        _durable(tmp_idx, _index(entries, pack_sum))
        (folder / f"pack-{pack_name}.keep").write_bytes(KEEP)  # before git can see the pack
        os.replace(tmp_pack, folder / f"pack-{pack_name}.pack")
        os.replace(tmp_idx, folder / f"pack-{pack_name}.idx")  # the index last: git reads packs by it
    finally:
        tmp_pack.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
    _sync_dir(folder)  # the commit that names the blob must not outlive the pack in a crash
    if old_pack is not None and old_pack.name != f"pack-{pack_name}.pack":
        old_pack.with_suffix(".idx").unlink(missing_ok=True)
        old_pack.unlink(missing_ok=True)
        old_pack.with_suffix(".keep").unlink(missing_ok=True)
    if fresh:  # git holds the version before in this pack now: not loose as well
        _drop_loose(folder.parent, entries[0][0].hex())
        if isinstance(name, str) and name != pack_name and _KEEP_OK.match(name):
            _unkeep(folder / f"pack-{name}.keep")  # the chain before: `gc` may fold it now
    if fresh:
        chain["root_len"] = len(old)
    chain.update({"name": pack_name, "tip": new_id.hex(), "tip_sha256": new_sha256, "depth": depth,
                  "tip_len": len(new),
                  "ops": _kept_ops(over_root), "entries": [[o, c, off] for o, c, off in entries]})
    kept.changed(key)
    kept.save()


def _unkeep(path: Path) -> None:
    try:
        if path.read_bytes() == KEEP:  # only a mark this module wrote
            path.unlink()
    except OSError:
        pass


def _durable(path: Path, data: bytes) -> None:
    """Written and on disk, read-only as git leaves its packs."""
    path.unlink(missing_ok=True)  # one a crashed run left, read-only
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o444)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
