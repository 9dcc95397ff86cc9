"""A big plan's new version stored as a delta against the one before (issue 17, ADR 0012).

Git stores every version of a file whole until `gc` packs them: a 50,000-task plan.yaml is a
540 KB zlib blob, so each `task add` grew `.git` by that much. Git keeps deltas only inside a
pack, against a base in the same pack. So flowgit keeps the versions it writes of one big plan
in a pack of its own: the first version of the chain whole, each later one a delta against the
one before, made from the splice itself (copy the lines before the task, insert the task's new
lines, copy the rest). Each edit writes that pack again (the old entries copied byte for byte,
the new delta after them) with its index, then removes the previous one: `.git` grows by the
delta. The pack is written before the commit, so git finds the new blob there and writes no
loose copy. Past `DEPTH` deltas, or when the pack is gone (`gc` packed everything), a new chain
starts. Nothing here is needed for correctness: whatever fails, the commit writes the blob as
git always does."""
from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import Any

from flowgit.store.repo import FlowRepo

BIG = 1024 * 1024  # smaller plans: a loose blob costs less than this bookkeeping
DEPTH = 32  # deltas in one chain before a new one starts
BLOB, REF_DELTA = 3, 7


def blob_id(data: bytes) -> bytes:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).digest()


def tip_blob(repo: FlowRepo, plan_id: str, sha256: str) -> str | None:
    """The blob id of the version the plan's chain ends with, when its sha256 is `sha256`."""
    from flowgit.store.kept import kept as kept_store

    chain = kept_store(repo).entry(f"pack-{plan_id}")
    tip = chain.get("tip")
    return tip if chain.get("tip_sha256") == sha256 and isinstance(tip, str) and len(tip) == 40 else None


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
    name = chain.get("name")
    entries = [(bytes(o), c, off) for o, c, off in chain.get("entries") or []]
    old_pack = folder / f"pack-{name}.pack" if isinstance(name, str) else None
    body = b""
    if old_pack is not None and old_pack.exists() and entries and chain.get("tip") == base.hex() \
            and len(entries) <= DEPTH:
        data = old_pack.read_bytes()
        body = data[12:-20]
        intact = data[:4] == b"PACK" and struct.unpack(">II", data[4:12]) == (2, len(entries)) \
            and data[-20:].hex() == name and hashlib.sha1(data[:-20]).digest() == data[-20:]
        if not intact:  # not the pack this chain wrote: start another, leave that one to git
            old_pack, entries = None, []
    else:
        old_pack, entries = None, []
    if any(oid == new_id for oid, _, _ in entries):
        return  # a version the chain has (an edit undone)
    if not entries:  # a new chain: the version before, whole
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
        os.replace(tmp_pack, folder / f"pack-{pack_name}.pack")
        os.replace(tmp_idx, folder / f"pack-{pack_name}.idx")  # the index last: git reads packs by it
    finally:
        tmp_pack.unlink(missing_ok=True)
        tmp_idx.unlink(missing_ok=True)
    _sync_dir(folder)  # the commit that names the blob must not outlive the pack in a crash
    if old_pack is not None and old_pack.name != f"pack-{pack_name}.pack":
        old_pack.with_suffix(".idx").unlink(missing_ok=True)
        old_pack.unlink(missing_ok=True)
    chain.update({"name": pack_name, "tip": new_id.hex(), "tip_sha256": new_sha256,
                  "entries": [[o, c, off] for o, c, off in entries]})
    kept.changed(key)
    kept.save()


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
