"""The one door for writes. Every transition is

    with repo.writing(plan_id) as w:      # the lock; a crashed write recovered; fresh state
        ...decide on w.state at w.now...   # raise to write nothing
        w.append(task_id, events)          # operations, not paths: events onto a stream,
        w.replace(path, content)           # or a definition file replaced whole
        w.message = commit_message(...)

and on leaving the block the events are appended (fsynced) and the files written, all
committed as one commit under a journal, and the read caches forgotten. A failed commit takes
every write back, so a command that reports failure leaves nothing for the next one to commit.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence, TypeVar

from flowgit import git, git_state
from flowgit.clock import wall_now
from flowgit.crashpoints import crash_point
from flowgit.core.events import PLAN_LOG, Event
from flowgit.core.fold import PlanState
from flowgit.core.lifecycle import Decision
from flowgit.errors import FlowError, RaceLost
from flowgit.store.compacting import with_compaction
from flowgit.store.files import append, repair_torn, write_atomic
from flowgit.store.healing import ensure_log_intact

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo

T = TypeVar("T")


class Write:
    """What one transition will write; nothing touches disk until the block ends."""

    def __init__(self, repo: FlowRepo, plan_id: str | None, now: float) -> None:
        self.repo = repo
        self.plan_id = plan_id
        self.now = now
        self.message = ""
        self.sha: str | None = None
        self.streams: dict[tuple[str, str], list[Event]] = {}  # (plan, stream) -> new events
        self.rewrites: dict[tuple[str, str], bytes] = {}  # (plan, stream) -> a compacted log
        self.files: dict[Path, bytes | None] = {}  # None: the file is removed
        self._state: PlanState | None = None
        self.merge: tuple[str, Callable[[], object] | None] | None = None
        self.written: dict[tuple[str, str], list[Event]] = {}  # the events as committed (format 2)

    @property
    def state(self) -> PlanState:
        """The plan's state at `now`, read under the lock."""
        if self._state is None:
            assert self.plan_id is not None, "writing() without a plan has no state"
            self._state = self.repo.state(self.plan_id, self.now)
        return self._state

    def append(self, stream: str, events: Sequence[Event], plan_id: str | None = None) -> None:
        """Append events to a stream (a task id, or PLAN_LOG) of this plan (or another)."""
        plan = plan_id or self.plan_id
        assert plan is not None
        if events:
            self.repo.log_file(plan, stream)  # checks the ids
            self.streams.setdefault((plan, stream), []).extend(events)

    def rewrite(self, stream: str, events: Sequence[Event]) -> None:
        """Replace a stream's log by these events (compaction: a snapshot and the last ones)."""
        assert self.plan_id is not None
        self.repo.log_file(self.plan_id, stream)
        self.rewrites[(self.plan_id, stream)] = "".join(e.to_line() for e in events).encode()

    @property
    def appends(self) -> dict[Path, list[Event]]:
        """The appends by file (format 1, logs in the branch)."""
        return {self.repo.log_file(plan, stream): events for (plan, stream), events in self.streams.items()}

    def branch_files(self) -> dict[Path, bytes | None]:
        """Definition files, and with format 1 the compacted logs too."""
        if self.repo.state_store is not None:
            return self.files
        logs: dict[Path, bytes | None] = {self.repo.log_file(p, s): c for (p, s), c in self.rewrites.items()}
        return {**logs, **self.files}

    def replace(self, path: Path, content: bytes) -> None:
        """Replace a definition file (a plan, a spec, an ADR, the CHANGELOG) whole."""
        self.files[path] = content

    def record(self, decision: Decision, actor: str) -> None:
        """A task transition decided by `flowgit.core.lifecycle`: its events (other tasks' too:
        a retry of several failed tasks is one commit) and commit message."""
        assert self.plan_id is not None
        self.append(decision.task or "", decision.task_events)
        self.append(PLAN_LOG, decision.plan_events)
        for stream, events in decision.more:
            self.append(stream, events)
        self.message = commit_message(self.plan_id, decision.task, decision.event_name, actor)

    def merge_first(self, branch: str, merge: Callable[[], object] | None) -> None:
        """`run`'s merge-with-done (ADR 0005): `merge()` merges the task's branch into the work
        tree (None: nothing to merge), and this write's events are committed with that merge as
        one commit. A crash between the two is settled by the journal: a `done` is never kept
        without its merge."""
        self.merge = (branch, merge)

    def remove(self, path: Path) -> None:
        """Remove a definition file (a rollback to a revision that had no spec)."""
        self.files[path] = None

    @property
    def pending(self) -> bool:
        return bool(self.streams or self.rewrites or self.files)


@contextlib.contextmanager
def writing(repo: FlowRepo, plan_id: str | None = None, *, commit: bool = True,
            prepare: Callable[[], object] | None = None,
            then: Callable[[str | None], object] | None = None,
            now: Callable[[], float] = wall_now) -> Iterator[Write]:
    """The write door (see the module docstring). Under the lock, `prepare()` runs before the
    state is read (a sync's fetch and merge) and `then(sha)` after the commit (its push).
    `commit=False` writes the files and leaves them for the user to commit (a `rollback` over
    a plan they are editing, say)."""
    with repo.lock():
        repo.journal.recover()
        if repo.state_store is not None:
            from flowgit.store.imports import import_stray_logs

            import_stray_logs(repo, "flowgit")
        if prepare is not None:
            prepare()
            repo.forget_all()
        elif plan_id is not None:
            repo.forget(plan_id)
        w = Write(repo, plan_id, now())
        yield w
        if w.pending:
            if not w.message:
                raise ValueError("a write needs a commit message")
            try:
                if repo.state_store is not None:
                    w.sha = _apply_state(repo, w, commit)
                elif w.merge:
                    w.sha = _apply_with_merge(repo, w)
                else:
                    w.sha = _apply(repo, w.appends, w.branch_files(), w.message, commit)
            finally:
                for plan, _ in [*w.streams, *w.rewrites]:
                    repo.forget(plan)
                for path in w.files:
                    parts = repo.rel(path).split("/")
                    if len(parts) > 2 and parts[1] == "plans":
                        repo.forget(parts[2])
        if then is not None:
            then(w.sha)


def write(repo: FlowRepo, plan_id: str | None, decide: Callable[[Write], T]) -> tuple[T, str | None]:
    """The door for a decision written as a function: `decide(w)` returns the result."""
    with writing(repo, plan_id) as w:
        result = decide(w)
    return result, w.sha


def _apply(repo: FlowRepo, appends: Mapping[Path, Sequence[Event]], files: Mapping[Path, bytes | None],
           message: str, commit: bool) -> str | None:
    """Append events (fsynced), write whole files atomically, and commit just those paths.
    Under the lock, after deciding. The journal makes a crash between append and commit
    recoverable by the next command."""
    paths = [repo.rel(p) for p in [*appends, *files]]
    repo.journal.note_write(paths)
    crash_point("journal")
    sizes: dict[Path, int | None] = {}
    olds: dict[Path, bytes | None] = {}
    for path in appends:
        repo.refuse_symlink(path)
        if path.exists():
            try:
                ensure_log_intact(repo, path, "run the command again to decide on them")
            except RaceLost:
                repo.journal.clear()
                raise
            sizes[path] = path.stat().st_size
        else:
            sizes[path] = None
    try:
        for path, events in appends.items():
            append(path, events)
        crash_point("appended")
        for path, content in files.items():
            repo.refuse_symlink(path)
            olds[path] = path.read_bytes() if path.exists() else None
            if content is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, content)
    except OSError:  # a read-only or full file system: take back what got written
        _undo(sizes, olds)
        repo.journal.clear()
        raise
    crash_point("written")
    if not commit:
        repo.journal.clear()
        return None
    created = [repo.rel(p) for p, size in sizes.items() if size is None]
    created += [repo.rel(p) for p, old in olds.items() if old is None and files[p] is not None]
    try:
        sha = git.commit_paths(repo.root, paths, message, created, repo.dirs)
    except FlowError:
        # the commit did not happen (another git command held the index, say): take the
        # writes back, so a command that reported failure leaves nothing to commit later
        if _take_back(repo, paths, sizes, olds):
            repo.journal.clear()
        raise
    crash_point("committed")
    repo.journal.clear()
    return sha


def _apply_state(repo: FlowRepo, w: Write, commit: bool) -> str | None:
    """Format 2: definition files are committed on the branch as before, the events on the
    state branch (ADR 0011). `run`'s merge commits the code first; the `done` follows, under
    the journal, which finishes it if the merge landed and drops it if not."""
    store = repo.state_store
    assert store is not None
    from flowgit.store.planpin import pins

    pinned = pins(repo, w)  # the accepted plan, or this edit of it, beside the events
    sha = None
    if w.files:
        sha = _apply(repo, {}, w.files, w.message, commit)
    if not (w.streams or w.rewrites or pinned):
        return sha
    if w.merge:
        branch, merge = w.merge
        repo.journal.begin_state_merge(branch, w)
        crash_point("merge-journal")
        try:
            if merge is not None:
                merge()
                crash_point("merged")
                trailers = w.message.rstrip("\n").split("\n\n")[-1]
                git_state.commit_merge(repo.root, f"Merge branch '{branch}'\n\n{trailers}\n")
        except Exception:
            if merge is not None and git.in_merge(repo.dirs):
                git.merge_abort(repo.root)
            repo.journal.end_merge()
            raise
        crash_point("merge-committed")
    head = git.read_head(repo.dirs)
    streams = {key: [_with_code(e, head) for e in events] for key, events in w.streams.items()}
    w.written = streams
    state_sha = write_events(repo, streams, with_compaction(repo, streams, w.rewrites, w.now), w.message,
                             pinned=pinned)
    crash_point("committed")
    if w.merge:
        repo.journal.end_merge()
    return state_sha if sha is None else sha


def _with_code(event: Event, head: str | None) -> Event:
    """The event naming the code commit it relates to (what a pull request completed)."""
    if head is None or "code" in event.data:
        return event
    return dataclasses.replace(event, data={**event.data, "code": head})


def write_events(repo: FlowRepo, streams: Mapping[tuple[str, str], Sequence[Event]],
                 rewrites: Mapping[tuple[str, str], bytes], message: str,
                 extra_parents: Sequence[str] = (), pinned: Mapping[str, bytes | None] | None = None) -> str:
    """One commit on the state branch: these events appended, these logs replaced, and the
    plan versions execution follows recorded (`store/planpin.py`)."""
    from flowgit.store.state import appended, log_path

    store = repo.state_store
    assert store is not None
    changes: dict[str, bytes | None] = dict(pinned or {})
    for (plan, stream), content in rewrites.items():
        changes[log_path(plan, stream)] = content
    for (plan, stream), events in streams.items():
        path = log_path(plan, stream)
        base = changes.get(path)
        if base is None:
            base = store.read(plan, stream)
        changes[path] = appended(base, events, store.display(plan, stream), plan, stream)
    return store.commit(changes, message, extra_parents)


def _apply_with_merge(repo: FlowRepo, w: Write) -> str | None:
    assert w.merge is not None and not w.files
    branch, merge = w.merge
    logs = list(w.appends)
    repo.journal.begin_merge(branch, logs)
    crash_point("merge-journal")
    try:
        if merge is not None:
            merge()
        crash_point("merged")
        for path in logs:  # never glue `done` onto a broken line
            try:
                ensure_log_intact(repo, path, "the task is tried again")
            except FlowError:
                if merge is not None:
                    git.merge_abort(repo.root)
                raise
        sizes = {path: path.stat().st_size if path.exists() else None for path in logs}
        try:
            for path, events in w.appends.items():
                repo.refuse_symlink(path)
                append(path, events)
            crash_point("done-appended")
            git.commit_tracked(repo.root, [repo.rel(p) for p in logs], w.message,
                               merging=merge is not None)
            crash_point("merge-committed")
            return git.read_head(repo.dirs)
        except Exception:
            for path, size in sizes.items():
                if size is None:
                    path.unlink(missing_ok=True)
                else:
                    repair_torn(path, size)
            if merge is not None:
                git.merge_abort(repo.root)
            raise
    finally:  # a failure took both back; a kill, or a merge left on, keeps the journal
        if not git.in_merge(repo.dirs):
            repo.journal.end_merge()


def _undo(sizes: Mapping[Path, int | None], olds: Mapping[Path, bytes | None]) -> None:
    """Put appended logs and replaced files back as they were, as far as the disk lets us."""
    for path, size in sizes.items():
        try:
            if size is None:
                path.unlink(missing_ok=True)
            elif path.stat().st_size != size:
                repair_torn(path, size)
        except OSError:
            pass
    for path, old in olds.items():
        try:
            if old is None:
                path.unlink(missing_ok=True)
            elif not path.exists() or path.read_bytes() != old:
                _put_back(path, old)
        except OSError:
            pass


def _take_back(repo: FlowRepo, paths: Sequence[str], sizes: Mapping[Path, int | None],
               olds: Mapping[Path, bytes | None]) -> bool:
    """Undo an uncommitted write. False (and the journal stays) if HEAD has it after all."""
    try:
        if all(git.show_blob(repo.root, "HEAD", rel) == _bytes_or_none(repo.root / rel) for rel in paths):
            return False  # every path already matches HEAD: the commit went through
        for path, size in sizes.items():
            if size is None:
                path.unlink(missing_ok=True)
            else:
                repair_torn(path, size)
        for path, old in olds.items():
            if old is None:
                path.unlink(missing_ok=True)
            else:
                _put_back(path, old)
        git.unstage(repo.root, paths)
        return True
    except (OSError, FlowError):
        return False


def _put_back(path: Path, old: bytes) -> None:
    """A file's old content back: atomically when the disk has room for a copy, else over
    the new content in place (a full disk: the file then shrinks into blocks it holds)."""
    try:
        write_atomic(path, old)
    except OSError:
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        try:
            view = memoryview(old)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)


def commit_message(plan: str, task: str | None, event: str, actor: str, body: str = "") -> str:
    subject = f"flow({plan}/{task}): {event}" if task else f"flow({plan}): {event}"
    trailers = [f"Flow-Plan: {plan}"]
    if task:
        trailers.append(f"Flow-Task: {task}")
    trailers += [f"Flow-Event: {event}", f"Flow-Actor: {actor}"]
    parts = [subject]
    if body:
        parts.append(body)
    parts.append("\n".join(trailers))
    return "\n\n".join(parts) + "\n"


def _bytes_or_none(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
