"""The journal under `.git/`: what a write or a `run` merge has begun, so that the next command
recovers a crash (commits what was appended, or takes back a `done` whose merge never landed)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from flowgit import git
from flowgit.errors import FlowError
from flowgit.store.files import repair_torn
from flowgit.store.healing import heal_log
from flowgit.store.lock import RepoLock

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo

FLOW = ".flow"
JOURNAL = "flowgit-journal"
STALE_LOCK_WINDOW = 30.0  # seconds after a journal in which its command's git locks appear


class Journal:
    def __init__(self, repo: FlowRepo) -> None:
        self.repo = repo
        self.path = repo.dirs.git_dir / JOURNAL

    def exists(self) -> bool:
        return self.path.exists()

    def note_write(self, paths: Sequence[str]) -> None:
        """A write is about to append to (or replace) these paths and commit them."""
        try:
            self.path.write_text(json.dumps({"paths": list(paths), "pid": os.getpid()}))
        except OSError:  # a full disk: nothing is written yet, and no half journal is left
            self.clear()
            raise

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)

    def begin_merge(self, branch: str, logs: Sequence[Path]) -> None:
        """`run` is about to merge a task's branch and append `done` to these logs, then commit
        both: note what to take back should it die before the commit. Call under the lock."""
        sizes = {self.repo.rel(p): p.stat().st_size for p in logs}
        self.path.write_text(json.dumps({
            "paths": [], "merge": branch, "pid": os.getpid(), "sizes": sizes,
            "head": git.read_head(self.repo.dirs), "tip": git.read_ref(self.repo.dirs, f"refs/heads/{branch}")}))

    def begin_state_merge(self, branch: str, w: Any) -> None:
        """Format 2: `run` is about to merge a task's branch, commit it, then write `done` on
        the state branch. Should it die between, the next command writes the `done` if the
        merge landed and drops it if not."""
        streams = [[plan, stream, [e.to_line() for e in events]] for (plan, stream), events in w.streams.items()]
        self.path.write_text(json.dumps({
            "paths": [], "merge": branch, "pid": os.getpid(), "head": git.read_head(self.repo.dirs),
            "tip": git.read_ref(self.repo.dirs, f"refs/heads/{branch}"),
            "state": {"message": w.message, "streams": streams}}))

    def _finish_state_merge(self, entry: dict[str, Any]) -> bool:
        from flowgit.core.events import parse_log
        from flowgit.store.writing import write_events

        tip = entry.get("tip")
        if git.in_merge(self.repo.dirs):
            if git.merge_head(self.repo.dirs) != tip or not self._abort_merge():
                return False
            self.clear()  # the merge never committed: neither does its `done`
            return True
        if git.operation_in_progress(self.repo.dirs):
            return False
        state = entry.get("state") or {}
        merged = not isinstance(tip, str) or git.is_ancestor(self.repo.root, tip, "HEAD")
        todo: dict[tuple[str, str], list[Any]] = {}
        if merged:
            for item in state.get("streams") or []:
                try:
                    plan, stream, lines = item
                    read = parse_log("".join(lines).encode(), "the journal", plan, None)
                    have = {e.id for e in self.repo.read_log(plan, stream).events}
                except (TypeError, ValueError, FlowError):
                    continue
                new = [e for e in read.events if e.id not in have]
                if new:
                    todo[(plan, stream)] = new
        if todo:
            write_events(self.repo, todo, {}, str(state.get("message") or "flow: done after a crash"))
        self.clear()
        return True

    def begin_sync_merge(self, theirs: str) -> None:
        """`sync` is about to merge the remote's `theirs`: should it die half-way, the next
        command aborts that merge (and only that one) instead of every later sync failing."""
        self.path.write_text(json.dumps({"paths": [], "sync": theirs, "pid": os.getpid()}))

    def undo_interrupted_sync(self) -> bool:
        """Abort the merge a killed `sync` left in progress (MERGE_HEAD at the commit it noted).
        Call under the lock. False when there is no such merge."""
        try:
            entry = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return False
        theirs = entry.get("sync") if isinstance(entry, dict) else None
        if not isinstance(theirs, str):
            return False
        self._clear_stale_git_locks(self.path.stat().st_mtime)
        if git.merge_head(self.repo.dirs) == theirs and not self._abort_merge():
            return False
        self.clear()
        return True

    def _abort_merge(self) -> bool:
        for _ in range(20):  # the dead writer's git child may still be letting go of the index
            abort = git.merge_abort(self.repo.root)
            if abort.returncode == 0 or b"index.lock" not in abort.stderr:
                break
            time.sleep(0.1)
        return abort.returncode == 0

    def end_merge(self) -> None:
        self.path.unlink(missing_ok=True)

    def merge_entry(self) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) and entry.get("merge") else None

    def settle_dead_merge(self) -> None:
        """Readers too must not see a `done` whose merge a killed `run` never committed: when
        the journal says so and its writer is dead, undo it if the lock is free right now
        (otherwise read as is: the next writer undoes it)."""
        entry = self.merge_entry()
        try:
            pid = int(entry["pid"]) if entry else 0
        except (KeyError, TypeError, ValueError):
            return
        if pid <= 0 or pid == os.getpid():
            return
        try:
            os.kill(pid, 0)
            return  # alive: its commit is on its way
        except ProcessLookupError:
            pass
        except PermissionError:
            return
        try:
            with RepoLock(self.repo.dirs.common_dir, 0):
                if self.undo_interrupted_merge(clear_git_locks=False):
                    self.repo.cache.drop_all()
                    self.repo.plan_cache.drop_all()
                    self.repo.forget_all()
        except (FlowError, OSError):
            return

    def undo_interrupted_merge(self, clear_git_locks: bool = True) -> bool:
        """A `run` killed between merging a task's branch and committing it left the merge in
        progress and `done` appended. If the branch's work is not in HEAD, take both back, so
        `done` is never recorded without its merge (the task's lease expires and it runs
        again; its branch is kept); if it is (the commit went through, there was nothing to
        merge, or the user finished the merge), what was appended stands and is committed as
        any interrupted append (`recover`). Only that merge (MERGE_HEAD at the branch tip
        noted) is ever aborted. Call under the lock: holding it, the journal's writer is gone.
        False when there is nothing, or nothing safe, to do now."""
        entry = self.merge_entry()
        if entry is None:
            return False
        if clear_git_locks:
            self._clear_stale_git_locks(self.path.stat().st_mtime)
        if "state" in entry:
            return self._finish_state_merge(entry)
        tip = entry.get("tip")
        if git.in_merge(self.repo.dirs):
            if git.merge_head(self.repo.dirs) != tip:
                return False  # someone else's merge: leave it, and the journal, alone
            if not self._abort_merge():
                return False
        if git.operation_in_progress(self.repo.dirs):
            return False  # the user's rebase or cherry-pick: later
        logs = [(rel, size) for rel, size in (entry.get("sizes") or {}).items()
                if isinstance(rel, str) and isinstance(size, int) and rel.startswith(FLOW + "/")
                and ".." not in rel.split("/") and (self.repo.root / rel).is_file()
                and not (self.repo.root / rel).is_symlink()]
        merged = not isinstance(tip, str) or git.is_ancestor(self.repo.root, tip, "HEAD")
        if merged:
            self.path.write_text(json.dumps({"paths": [rel for rel, _ in logs], "pid": entry.get("pid")}))
            return True
        for rel, size in logs:
            if (self.repo.root / rel).stat().st_size > size:
                repair_torn(self.repo.root / rel, size)
        self.path.unlink(missing_ok=True)
        return True

    def recover(self) -> str | None:
        """Commit what a crashed command appended but did not commit. Call under the lock."""
        if not self.path.exists():
            return None
        try:
            paths = json.loads(self.path.read_text()).get("paths", [])
        except ValueError:
            paths = []
        pending = [p for p in paths if isinstance(p, str) and p.startswith(FLOW + "/")
                   and (self.repo.root / p).exists()]
        # The command that wrote the journal died (we hold the lock it held): a git child
        # killed with it may have left the index or ref locks, which would fail every commit.
        self._clear_stale_git_locks(self.path.stat().st_mtime)
        sha = None
        if pending:
            for p in pending:
                self._repair_if_torn(p)
            # a repaired torn line may leave the file as committed, and a commit cut off
            # after moving HEAD leaves only the index behind: commit only what differs
            changed = set(git.changed_paths(self.repo.root, FLOW))
            todo = [p for p in pending if p in changed]
            if todo:
                git.add(self.repo.root, todo)
                if git.head(self.repo.root) is not None:
                    todo = [p for p in todo if p in set(git.staged_paths(self.repo.root, todo))]
            if todo:
                sha = git.commit_paths(self.repo.root, todo, "flow: recover events appended before a crash\n\nFlow-Event: recover")
        self.path.unlink(missing_ok=True)
        return sha

    def _clear_stale_git_locks(self, since: float) -> list[str]:
        """Remove git lock files created by a flowgit command that died mid-commit: only
        those created after its journal, and only once they stop changing (a git child that
        outlived its parent finishes in a moment). Call under the lock, with a journal."""
        candidates = git.lock_files(self.repo.dirs)
        seen: dict[Path, tuple[int, int]] = {}
        for lock in candidates:
            try:
                st = os.lstat(lock)
            except OSError:
                continue
            # made within moments of the journal: the interrupted command's (an older or a much
            # newer one is the user's, a `git commit` waiting in its editor, say)
            if since - 1.0 <= st.st_mtime <= since + STALE_LOCK_WINDOW:
                seen[lock] = (st.st_mtime_ns, st.st_size)
        if not seen:
            return []
        time.sleep(0.3)
        removed = []
        for lock, key in seen.items():
            try:
                again = os.lstat(lock)
                if (again.st_mtime_ns, again.st_size) == key:
                    os.unlink(lock)
                    removed.append(str(lock))
            except OSError:
                pass
        return removed

    def _repair_if_torn(self, rel: str) -> None:
        if not rel.endswith(".jsonl"):
            return
        path = self.repo.root / rel
        data = path.read_bytes()
        if data.rfind(b"\n") + 1 < len(data):
            heal_log(self.repo, path)
