"""Many machines through one remote, with the state branch (ADR 0011): only `flow/state` is
fetched and pushed, never the code branch. A rejected push is the compare-and-swap: fetch,
merge by the union of event sets, decide again.

Merging two histories of the state keeps every event either side ever had: a deletion on one
side never drops a line, and a log that either side compacted is rebuilt from its whole
history in git (the fold is order-dependent, ADR 0001: a snapshot is never applied on top of
events it did not see)."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Sequence

from flowgit import git, git_state
from flowgit.core.events import PLAN_LOG, parse_log
from flowgit.crashpoints import crash_point
from flowgit.errors import FormatMismatch, InvalidFile, RaceLost, UnrelatedState
from flowgit.formats.jsonlmerge import event_ids, has_snapshot, union_logs
from flowgit.store.repo import FlowRepo
from flowgit.store.state import INDEX, StateStore
from flowgit.treecheck import Unchecked

EVENTS_ROOT = ".flow/plans/"
REGULAR, ABSENT, GITLINK = "100644", "000000", "160000"


def _store(repo: FlowRepo) -> StateStore:
    store = repo.state_store
    assert store is not None
    return store


def tracking_ref(store: StateStore, remote: str) -> str:
    return f"refs/remotes/{remote}/{store.branch}"


def fetch_merge(repo: FlowRepo, remote: str, allow_unrelated: bool = False,
                claims: str | bool = False, defer: list[Any] | None = None) -> str:
    """Bring the remote's state in (under the lock): 'no remote branch', 'up to date',
    'fast-forward' or 'merged'. A remote state with no history in common with ours (another
    repository's, a branch recreated by hand) is refused unless `allow_unrelated`. `claims`:
    the claim refs of that plan (True: of every plan) come in the same fetch and their
    claims are folded into the state (ops/claimrefs) in a state commit of their own, or with
    `defer` handed over there (a `claimrefs.Fresh`) for the caller's own commit to fold."""
    store = _store(repo)
    store.refuse_code_branch()
    store.check_writable()
    from flowgit.ops import claimrefs

    also = claimrefs.fetch_specs(store, remote, claims if isinstance(claims, str) else None) if claims else []
    if not git_state.fetch_ref(repo.root, remote, store.branch, tracking_ref(store, remote), also):
        return _no_remote_state(repo, remote, store)
    merged = _merge_fetched(repo, remote, store, allow_unrelated)
    # after the merge: a claim of a task the fetched state's plan amendment added is folded
    fresh = claimrefs.read_fresh(repo, remote, claims if isinstance(claims, str) else None) if claims else None
    if fresh is not None and defer is None:
        claimrefs.fold(repo, remote, fresh)
    elif fresh is not None and defer is not None:
        claimrefs.note_folded(repo, fresh, claims=False)
        if fresh.claims:
            claimrefs.seen_others(repo, claimrefs.claimers(fresh))
        defer.append(fresh)
    return merged


def _no_remote_state(repo: FlowRepo, remote: str, store: StateStore) -> str:
    code = git.current_branch(repo.root)
    config = git.show_blob(repo.root, f"refs/remotes/{remote}/{code}", ".flow/config.yaml") if code else None
    if config is not None and not re.search(rb"^version:[ \t]*2\b", config, re.M):
        raise FormatMismatch(f"{remote} is still format 1 (its event logs are in its branches) and has "
                             f"no {store.branch}: migrate it (push this migrated branch and "
                             f"{store.branch}), or sync with a remote of this format")
    return "no remote branch"


def _merge_fetched(repo: FlowRepo, remote: str, store: StateStore, allow_unrelated: bool) -> str:
    tracking = tracking_ref(store, remote)
    theirs = git.read_ref(repo.dirs, tracking)
    ours = store.local_head()
    if theirs is None or ours == theirs:
        return "up to date"
    name = f"{remote}/{store.branch}"
    # one merge-base says it all: theirs below ours (up to date), ours below theirs (a
    # fast-forward), a common base (a merge), none (unrelated)
    base = git_state.merge_base(repo.root, ours, theirs) if ours is not None else None
    if ours is not None and base == theirs:
        return "up to date"
    their: list[git_state.Change] | None = None
    mine: list[git_state.Change] | None = None
    # the paths a merge's diffs call added, looked up for a second entry by the merge's read of
    # the logs (`_merge_by_ids`), or by ls-tree (`check_left`) before anything is written
    unchecked: list[Unchecked] = []
    if base is not None and base != ours:  # what a merge brings: both sides' changes, one diff-tree
        assert ours is not None
        their, mine = git_state.tree_changes_many(repo.root, [(base, theirs), (base, ours)], store.own_commits(),
                                                  unchecked)
        _refuse_paths([c.path for c in their], name)
    elif ours is None:
        _refuse_unsafe_paths(repo, theirs, name)
    else:  # what a fast-forward brings (or a merge of unrelated histories)
        their = git_state.tree_changes(repo.root, ours, theirs, store.own_commits())
        _refuse_paths([c.path for c in their], name)
    if ours is None or (base == ours and not _loses_events(repo, ours, theirs, their)):
        git_state.advance_ref(repo.root, store.ref, theirs, ours, f"flowgit: fast-forward to {remote}")
        if ours is None or their is None:
            store.note_moved()
        else:  # the caches follow what the diff said, with no git process to learn it again
            store.advanced(ours, theirs, {c.path: None if c.new is None or c.new_mode == GITLINK else c.new
                                          for c in their},
                           {c.path.split("/")[2] for c in their if c.path.startswith(EVENTS_ROOT)})
        repo.forget_all()
        return "fast-forward"
    if not allow_unrelated and base is None:
        raise UnrelatedState(f"{remote}/{store.branch} shares no history with {store.branch} (another "
                             "repository's state, or one made again by hand): nothing was merged; "
                             "check `git remote get-url " f"{remote}`, or merge them with `flowgit sync "
                             "--allow-unrelated`")
    message = f"flow: sync with {remote}/{store.branch}"
    if base is None or not _merge_by_ids(repo, ours, theirs, base, message, their, mine, unchecked):
        git_state.check_left(repo.root, unchecked)
        merge_states(repo, ours, theirs, message)
    repo.forget_all()
    return "merged"


def _merge_by_ids(repo: FlowRepo, ours: str, theirs: str, base: str, message: str,
                  their_changes: list[git_state.Change] | None = None,
                  my_changes: list[git_state.Change] | None = None,
                  unchecked: list[Unchecked] | None = None) -> bool:
    """The merge commit `merge_states` would write, without a new blob, when it can be: every
    path either side changed since the merge base is an event log (a regular file, no
    snapshot) of which one side's version holds every line of the base's and of the other
    side's (logs only one side appended to; a claim one clone folded from its claim ref, ADR
    0013, and the claimer pushed). Its tree is ours with those versions. False: nothing
    written, the whole merge runs. Many clones claiming at once merge like this every round."""
    store = _store(repo)
    root = repo.root
    mine = {c.path: c for c in (my_changes if my_changes is not None
                                else git_state.tree_changes(root, base, ours))}
    their = {c.path: c for c in (their_changes if their_changes is not None
                                 else git_state.tree_changes(root, base, theirs))}
    for c in [*mine.values(), *their.values()]:
        if (c.new is None or c.new_mode != REGULAR or c.old_mode not in (REGULAR, ABSENT)
                or not c.path.startswith(EVENTS_ROOT) or not c.path.endswith(".jsonl")):
            return False
    blobs = _cat(repo, {b: c.path for side in (mine, their) for c in side.values() for b in (c.old, c.new) if b},
                 unchecked or ())
    take: dict[str, str | None] = {}
    for path, c in their.items():
        m = mine.get(path)
        if m is not None and m.new == c.new:
            continue
        versions = [blobs.get(c.old or "", b""), blobs.get(c.new or "", b"")]
        if m is not None:
            versions.append(blobs.get(m.new or "", b""))
        if any(has_snapshot(v) for v in versions):
            return False
        lines = [set(v.splitlines()) for v in versions]
        every = set().union(*lines)
        if lines[1] >= every:
            take[path] = c.new
        elif m is None or lines[2] < every or not lines[1] >= lines[0]:
            return False  # (theirs removed a line: the whole merge says whether it goes)
    for path, m in mine.items():
        if path not in their and not set(blobs.get(m.new or "", b"").splitlines()) >= set(
                blobs.get(m.old or "", b"").splitlines()):
            return False
    folder = git_state.state_dir(repo.dirs)
    index, marker = folder / INDEX, folder / (INDEX + ".base")
    based = index.exists() and _read_text(marker) == ours
    marker.unlink(missing_ok=True)
    (folder / (INDEX + ".lock")).unlink(missing_ok=True)
    if store.local_head() != ours:
        raise RaceLost(f"{store.ref} moved during a sync: run it again")
    crash_point("state-merge")
    tree = git_state.write_tree(root, index, ours, take, based)
    new = git_state.commit_tree(root, tree, [ours, theirs], message + "\n\nFlow-Event: sync\n")
    git_state.advance_ref(root, store.ref, new, ours, message)
    # its tree is ours with `take`; a plan of theirs whose logs we held already moves unchanged
    store.advanced(ours, new, take, {c.path.split("/")[2] for c in their.values()})
    store.remember_own(new)
    marker.write_text(new)
    crash_point("state-merged")
    return True


def _unsafe(path: str) -> bool:
    """A path git refuses to read into an index (`..`, `.git` and its NTFS spellings): a state
    commit holding one would stop every later write in this clone."""
    return any(part in ("", ".", "..") or part.lower().rstrip(". ") in (".git", "git~1")
               for part in path.split("/"))


def _refuse_unsafe_paths(repo: FlowRepo, theirs: str, name: str) -> None:
    """A state this clone has none of yet: every path of it."""
    _refuse_paths(list(git_state.list_blobs(repo.root, theirs, ".flow/")), name)


def _refuse_paths(paths: list[str], name: str) -> None:
    bad = next((p for p in paths if _unsafe(p)), None)
    if bad is not None:
        raise InvalidFile(f"{name}:{bad}: a path git refuses to check out, which flowgit never writes: "
                          "nothing was merged; remove it from the remote's state branch with a state commit")


def _loses_events(repo: FlowRepo, ours: str, theirs: str, changes: list[git_state.Change] | None = None) -> bool:
    """Whether the history from `ours` to `theirs` dropped an event of ours from a log without
    a compaction snapshot taking its place (a line deleted by hand, or by a tool without
    the rules): then it is merged by union, not fast-forwarded, and the event comes back.
    `changes`: `tree_changes(ours, theirs)`, read already."""
    root = repo.root
    if changes is None:
        changes = git_state.tree_changes(root, ours, theirs)
    # a path either side holds as a blob (a gitlink is none), under the plans
    changed = [(c.path, c.old if c.old_mode != GITLINK else None, c.new if c.new_mode != GITLINK else None)
               for c in changes if c.path.startswith(EVENTS_ROOT)]
    if not changed:
        return False
    blobs = _cat(repo, {b: path for path, old, new in changed for b in (old, new) if b})
    return any(_drops_events(blobs.get(old or "", b""), blobs.get(new or "", b""), path)
               for path, old, new in changed)


def _cat(repo: FlowRepo, paths: dict[str, str], check: Sequence[Unchecked] = ()) -> dict[str, bytes]:
    """Blobs (id -> the path it is at) read in one batch; a log above the size limit, which a
    remote can send, is refused by its path before it is read. `check`: added paths looked up
    for a second entry in the same batch."""
    from flowgit.core.storage import MAX_LOG_BYTES

    store = _store(repo)
    found = git_state.read_blobs(repo.root, list(paths), MAX_LOG_BYTES, lambda b: f"{store.branch}:{paths.get(b, b)}",
                                 check)
    store.keep(found)  # what the decision and the evaluation after the merge read again
    return found


def _drops_events(before: bytes, after: bytes, path: str) -> bool:
    if not before or after.startswith(before) or has_snapshot(after):
        return False
    # a line no reader folds (one `validate` refuses) dropped is the fix its warning asks
    # for, not a lost event
    kept = {ev.id for ev in parse_log(before, path).events}
    return not kept & set(event_ids(before)) <= set(event_ids(after))


def merge_states(repo: FlowRepo, ours: str, theirs: str, message: str) -> dict[str, Any]:
    """A merge commit of two state histories (parents ours, theirs) whose every log is the
    union of what either side ever had. Returns what it did, conflicting ids included."""
    store = _store(repo)
    root = repo.root
    base = git_state.merge_base(root, ours, theirs)
    if base is not None:
        touched = {c.path for c in git_state.changed_blobs(root, base, ours, EVENTS_ROOT)}
        touched |= {c.path for c in git_state.changed_blobs(root, base, theirs, EVENTS_ROOT)}
        base_ids = git_state.list_blobs(root, base, EVENTS_ROOT)
    else:
        touched = set(git_state.list_blobs(root, ours, EVENTS_ROOT)) | set(git_state.list_blobs(root, theirs, EVENTS_ROOT))
        base_ids = {}
    ours_ids = git_state.list_blobs(root, ours, EVENTS_ROOT)
    theirs_ids = git_state.list_blobs(root, theirs, EVENTS_ROOT)
    blobs = _cat(repo, {b: p for ids in (base_ids, ours_ids, theirs_ids) for p, b in ids.items() if p in touched})
    changes: dict[str, bytes | None] = {}
    conflicts: list[str] = []
    rebuilt: list[str] = []
    pinned = sorted(p for p in touched if not p.endswith(".jsonl"))  # recorded plans: not logs
    for path in sorted(touched.difference(pinned)):
        versions = [blobs.get(ids[path], b"") for ids in (base_ids, ours_ids, theirs_ids) if path in ids]
        if any(has_snapshot(v) for v in versions):
            history = git_state.blob_versions(root, [ours, theirs], path)
            versions = list(_cat(repo, {b: path for b in history}).values()) + versions
            content, clash = union_logs(versions, drop_snapshots=True)
            rebuilt.append(path)
        else:
            content, clash = union_logs(versions)
        conflicts += [f"{path}: {ident}" for ident in clash]
        content = _without_dropped(content, path, versions, *(blobs.get(ids.get(path, ""), b"")
                                                               for ids in (base_ids, ours_ids, theirs_ids)))
        if ours_ids.get(path) is None or blobs.get(ours_ids[path]) != content:
            changes[path] = content
    from flowgit.store.planpin import merge_recorded

    changes.update(merge_recorded(repo, pinned, (base_ids, ours_ids, theirs_ids), changes))
    body = ""
    if conflicts:
        body = "Events carried with different bytes (the smallest kept):\n" + "\n".join(conflicts)
    msg = message + ("\n\n" + body if body else "") + "\n\nFlow-Event: sync\n"
    if store.local_head() != ours:
        raise RaceLost(f"{store.ref} moved during a sync: run it again")
    crash_point("state-merge")  # fetched, merged in memory, nothing committed
    store.commit(changes, msg, extra_parents=[theirs])
    crash_point("state-merged")  # the merge committed, not pushed
    return {"conflicts": conflicts, "rebuilt": rebuilt, "logs": len(touched)}


def _without_dropped(content: bytes, path: str, versions: Sequence[bytes], base: bytes, ours: bytes,
                     theirs: bytes) -> bytes:
    """The merged log less the unreadable lines one side removed: a line the checker refuses
    (never folded; it holds its task, or the plan) stays only when both sides hold it, or one
    side brought it since the merge base. Removing such a line with a state commit is the fix
    its warning asks for, and a fast-forward takes it (`_drops_events`); the union brought it
    back from every clone that had merged it, and pushed it on (a forged clock line in a plan
    log held its plan for good)."""
    here, there, before = (set(v.split(b"\n")) for v in (ours, theirs, base))
    # lines one side (or both) does not hold that no side brought since the base: none when both
    # sides only appended, so the checker reads nothing then
    maybe = {line for v in versions for line in v.split(b"\n") if line.strip()
             and not (line in here and line in there) and not (line not in before and (line in here or line in there))}
    gone = _unreadable_of(b"".join(line + b"\n" for line in maybe), path) if maybe else set()
    if not gone:
        return content
    return b"".join(line + b"\n" for line in content.split(b"\n")[:-1] if line not in gone)


def _unreadable_of(data: bytes, path: str) -> set[bytes]:
    """`_unreadable` of the log at `path` of the state tree (none for a path that is no log)."""
    from flowgit.store.state import stream_of

    plan = path.split("/")[2] if path.startswith(EVENTS_ROOT) else ""
    stream = stream_of(plan, path) if plan else None
    return set() if stream is None else _unreadable(data, path, plan, None if stream == PLAN_LOG else stream)


def _unreadable(data: bytes, path: str, plan: str, task: str | None) -> set[bytes]:
    """The complete lines of a log the checker refuses (as `parse_log` lists them)."""
    if not data:
        return set()
    read = parse_log(data, path, plan, task)
    numbers = {int(b.where.rpartition(":")[2]) for b in read.bad}
    if not numbers:
        return set()
    lines = data[:read.good_bytes].split(b"\n")
    return {lines[n - 1] for n in numbers if 0 < n <= len(lines)}


def push(repo: FlowRepo, remote: str) -> bool:
    store = _store(repo)
    store.refuse_code_branch()
    head = store.head()
    if head is None:
        return True
    return git_state.push_ref(repo.root, remote, store.branch, head)


def take_back(repo: FlowRepo, sha: str) -> None:
    """Undo our own unpushed state commit (the ref goes back to its parent)."""
    store = _store(repo)
    if store.local_head() != sha:
        return
    store.check_writable()
    parent = git_state.first_parent(repo.root, sha)
    git_state.move_back(repo.root, store.ref, sha, parent)
    store.note_moved()
    repo.forget_all()


def rebase_own(repo: FlowRepo, remote: str, own: str, message: str,
               still_legal: Callable[[], bool]) -> str | None:
    """After the remote rejected our transition commit `own` (one commit on top of what this
    clone had): fetch, and when the remote moved only logs that neither `own` nor this clone's
    unpushed history touched, put `own` on top of the fetched tip (its parent the merged
    state, its tree that state's with `own`'s logs, `message` its message) instead of taking it back, merging and
    deciding again. Under the lock, no push.

    The new commit (the branch moved there), or None: the caller takes `own` back and decides
    again. None after the fetch leaves the branch at `own`, or at the merged state without
    `own` when `still_legal()` (run there) said the transition no longer holds."""
    store = _store(repo)
    root = repo.root
    tracking = tracking_ref(store, remote)
    if not git_state.fetch_ref(root, remote, store.branch, tracking):
        return None
    theirs = git.read_ref(repo.dirs, tracking)
    if theirs is None or store.local_head() != own:
        return None
    base = git_state.merge_base(root, own, theirs)
    parent = git_state.first_parent(root, own)
    if base is None or base == theirs or parent is None:  # unrelated, or nothing new there
        return None
    # theirs, ours and what ours has unpushed below `own`: one diff-tree
    diffs = git_state.tree_changes_many(root, [(base, theirs), (parent, own)] + ([(base, parent)] if base != parent
                                                                                   else []))
    if any(_unsafe(c.path) for c in diffs[0]):
        return None  # the whole merge refuses it, in one line
    mine = diffs[1]
    touched = {c.path for diff in diffs[1:] for c in diff}
    their = _news(repo, own, touched, diffs[0])
    # only appended logs of other tasks, as regular files: anything else takes the whole merge
    if not their or any(c.path in touched or c.new is None or c.new_mode != REGULAR
                        or c.old_mode not in (REGULAR, ABSENT) or not c.path.startswith(EVENTS_ROOT)
                        or not c.path.endswith(".jsonl") for c in their):
        return None
    if any(c.old_mode not in (REGULAR, ABSENT) for c in mine):
        return None
    blobs = _cat(repo, {b: c.path for c in their for b in (c.old, c.new) if b})
    if any(_drops_events(blobs.get(c.old or "", b""), blobs.get(c.new or "", b""), c.path) for c in their):
        return None
    folder = git_state.state_dir(repo.dirs)
    index, marker = folder / INDEX, folder / (INDEX + ".base")
    based = index.exists() and _read_text(marker) == own
    marker.unlink(missing_ok=True)
    (folder / (INDEX + ".lock")).unlink(missing_ok=True)
    if base == parent:  # nothing of ours unpushed below `own`: a rebase onto their tip
        tip = theirs
        tree = git_state.write_tree(root, index, theirs, {c.path: c.new for c in mine}, False)
    else:  # our unpushed history and theirs merged (disjoint logs), then `own` on top
        merged = {c.path: c.new for c in their} | {c.path: c.old for c in mine}
        tip = git_state.commit_tree(root, git_state.write_tree(root, index, own, merged, based),
                                    [parent, theirs], f"flow: sync with {remote}/{store.branch}\n\n"
                                    "Flow-Event: sync\n")
        tree = git_state.write_tree(root, index, None, {c.path: c.new for c in mine}, True)
    new = git_state.commit_tree(root, tree, [tip], message)
    git_state.advance_ref(root, store.ref, tip, own, f"flowgit: sync with {remote}")
    store.note_moved()
    repo.forget_all()
    if not still_legal():
        return None
    git_state.advance_ref(root, store.ref, new, tip, message.splitlines()[0] if message else "flowgit")
    store.note_moved()
    marker.write_text(new)
    repo.forget_all()
    return new


def _news(repo: FlowRepo, own: str, touched: set[str], their: list[git_state.Change]) -> list[git_state.Change]:
    """Their changes, less those to a log we touched whose every event we hold at `own`
    already: another clone folded our claim from its claim ref (ADR 0013) and pushed it."""
    overlap = [c for c in their if c.path in touched and c.new is not None and c.new_mode == REGULAR
               and c.path.startswith(EVENTS_ROOT) and c.path.endswith(".jsonl")]
    if not overlap:
        return their
    ours = {c.path: git_state.list_blobs(repo.root, own, c.path).get(c.path) for c in overlap}
    blobs = _cat(repo, {b: p for p, b in [*ours.items(), *((c.path, c.new) for c in overlap)] if b})
    held = set()
    for c in overlap:
        mine, theirs = blobs.get(ours[c.path] or "", b""), blobs.get(c.new or "", b"")
        if mine and not has_snapshot(theirs) and set(event_ids(theirs)) <= set(event_ids(mine)) \
                and not _unreadable_of(mine, c.path) - set(theirs.split(b"\n")):
            held.add(c.path)  # (an unreadable line of ours they lack may be one they removed)
    return [c for c in their if c.path not in held]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None



ODD = {"120000": "a symlink (mode 120000): flowgit reads the link's text as the log and never "
                 "follows it", "160000": "a submodule (a commit, mode 160000): nothing in it is read"}


def tree_oddities(repo: FlowRepo) -> list[str]:
    """`validate`: the symlinks and submodules in the state tree (flowgit writes neither; a
    fetch or a hand-made commit can bring them), one line each by branch:path. Cached by
    state commit."""
    store = _store(repo)
    head = store.head()
    if head is None:
        return []
    entry = repo.cache.entry("state@odd")
    if entry.get("commit") == head and isinstance(entry.get("found"), list):
        return list(entry["found"])
    found = [f"{store.branch}:{path}: {ODD.get(mode, f'an entry of mode {mode}')}, which flowgit never "
             "writes: replace it by a regular file, or remove it, with a state commit"
             for path, mode in git_state.odd_entries(repo.root, head)]
    entry.update({"commit": head, "found": found})
    repo.cache.changed("state@odd")
    return found
