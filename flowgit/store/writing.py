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
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Sequence, TypeVar

from flowgit import git
from flowgit.clock import wall_now
from flowgit.crashpoints import crash_point
from flowgit.core.events import PLAN_LOG, Event
from flowgit.core.fold import PlanState
from flowgit.core.lifecycle import Decision
from flowgit.errors import FlowError, RaceLost
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
        self.appends: dict[Path, list[Event]] = {}
        self.files: dict[Path, bytes | None] = {}  # None: the file is removed
        self._state: PlanState | None = None
        self.merge: tuple[str, Callable[[], object] | None] | None = None

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
            self.appends.setdefault(self.repo.log_file(plan, stream), []).extend(events)

    def rewrite(self, stream: str, events: Sequence[Event]) -> None:
        """Replace a stream's log by these events (compaction: a snapshot and the last ones)."""
        assert self.plan_id is not None
        self.files[self.repo.log_file(self.plan_id, stream)] = "".join(e.to_line() for e in events).encode()

    def replace(self, path: Path, content: bytes) -> None:
        """Replace a definition file (a plan, a spec, an ADR, the CHANGELOG) whole."""
        self.files[path] = content

    def record(self, decision: Decision, actor: str) -> None:
        """A task transition decided by `flowgit.core.lifecycle`: its events and commit message."""
        assert self.plan_id is not None
        self.append(decision.task or "", decision.task_events)
        self.append(PLAN_LOG, decision.plan_events)
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
        return bool(self.appends or self.files)


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
                w.sha = (_apply_with_merge(repo, w) if w.merge else
                         _apply(repo, w.appends, w.files, w.message, commit))
            finally:
                for path in [*w.appends, *w.files]:
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
                write_atomic(path, old)
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
                write_atomic(path, old)
        git.unstage(repo.root, paths)
        return True
    except (OSError, FlowError):
        return False


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
