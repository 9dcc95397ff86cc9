"""The `.flow/` directory on disk: safe paths, loading with a derived cache, and writing
events and files as one commit under the repository lock."""
from __future__ import annotations

import hashlib
import json
import marshal
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

from flowgit import git
from flowgit.core.events import PLAN_LOG, Event, LogRead, parse_log
from flowgit.core.fold import PlanState, TaskRecord, evaluate, reduce_task
from flowgit.core.model import Config, Plan, case_twin_message
from flowgit.errors import Ambiguous, FlowError, GitBusy, InvalidFile, NoActor, NotFound, NotInitialised, RaceLost
from flowgit.ids import check_actor, check_id, is_valid_id, split_ref
from flowgit.store.eventlog import append, repair_torn
from flowgit.store.lock import RepoLock

FLOW = ".flow"
CACHE_VERSION = 11  # 11: task files and ids under the path rules of issue 13
CONFIG_CACHE = "_config"
JOURNAL = "flowgit-journal"
STALE_LOCK_WINDOW = 30.0  # seconds after a journal in which its command's git locks appear


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


@dataclass
class LoadedPlan:
    plan: Plan
    path: Path
    hash: str
    _raw: Mapping[str, Any] | None = None

    @property
    def raw(self) -> Mapping[str, Any]:
        """The plan file as parsed YAML (read again when the plan came from the cache)."""
        if self._raw is None:
            from flowgit.formats import yamlio

            self._raw = yamlio.load_file(self.path, str(self.path))
        return self._raw


class FlowRepo:
    """One repository's `.flow/`. Reads are cached by file size+mtime+inode; deleting the
    cache changes no answer."""

    def __init__(self, start: Path) -> None:
        self.dirs = git.find_dirs(start)
        self.root = self.dirs.root
        self.flow = self.root / FLOW
        self._config: Config | None = None
        self._cache: dict[str, dict[str, Any]] = {}
        self._cache_dirty: set[str] = set()
        self._plans: dict[str, LoadedPlan] = {}

    # ----- paths ---------------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def safe(self, *parts: str) -> Path:
        """A path under .flow/ whose existing components are real directories, not symlinks."""
        path = self.flow
        self._no_symlink(path)
        for part in parts:
            path = path / part
            self._no_symlink(path)
        return path

    def _no_symlink(self, path: Path) -> None:
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        if stat.S_ISLNK(mode):
            raise InvalidFile(
                f"{self.rel(path)} is a symlink: flowgit never follows symlinks inside .flow/; "
                "replace it with a real file or directory"
            )

    def require_init(self) -> None:
        if not self.flow.is_dir():
            raise NotInitialised(f"{self.root}: no .flow/ here: run `flowgit init` first")

    def plan_dir(self, plan_id: str) -> Path:
        return self.safe("plans", check_id(plan_id, "plan id"))

    def plan_file(self, plan_id: str) -> Path:
        return self.safe("plans", check_id(plan_id, "plan id"), "plan.yaml")

    def spec_file(self, plan_id: str) -> Path:
        return self.safe("plans", check_id(plan_id, "plan id"), "spec.yaml")

    def log_file(self, plan_id: str, stream: str) -> Path:
        if stream != PLAN_LOG:
            check_id(stream, "task id")
        return self.safe("plans", check_id(plan_id, "plan id"), "events", f"{stream}.jsonl")

    # ----- config and plans ----------------------------------------------------------------
    @property
    def config(self) -> Config:
        """config.yaml, parsed once per change (the derived cache keeps the YAML parser off
        the hot path)."""
        if self._config is None:
            path = self.safe("config.yaml")
            try:
                key: list[int] | None = _stat_key(os.stat(path, follow_symlinks=False))
            except FileNotFoundError:
                key = None
            cache = self._plan_cache(CONFIG_CACHE)
            if key is not None and cache.get("stat") == key:
                data = cache.get("data")
            else:
                from flowgit.formats import yamlio

                data = yamlio.load_file(path, self.rel(path)) if key is not None else None
                try:
                    Config.from_dict(data, self.rel(path))
                except InvalidFile as exc:  # in the words and with the line validate gives
                    raise _with_line(exc, data, path, self.rel(path), "config") from None
                cache.update({"stat": key, "data": data})
                self._cache_dirty.add(CONFIG_CACHE)
            self._config = Config.from_dict(data, self.rel(path))
        return self._config

    def plan_ids(self) -> list[str]:
        self.require_init()
        plans = self.safe("plans")
        if not plans.is_dir():
            return []
        return sorted(
            e.name for e in os.scandir(plans)
            if is_valid_id(e.name) and e.is_dir(follow_symlinks=False)
            and (Path(e.path) / "plan.yaml").exists()
        )

    def plan_twins(self, plan_id: str) -> list[str]:
        """The plan directories whose names differ from `plan_id` only by case, with it."""
        folded = plan_id.casefold()
        with os.scandir(self.safe("plans")) as entries:
            twins = sorted(e.name for e in entries if e.name.casefold() == folded)
        return twins if len(twins) > 1 else []

    def linked_plans(self) -> list[str]:
        """Entries of plans/ that are symlinks: never read, so listings say they were left out."""
        plans = self.safe("plans")
        if not plans.is_dir():
            return []
        return sorted(e.name for e in os.scandir(plans) if e.is_symlink())

    def load_plan(self, plan_id: str) -> LoadedPlan:
        if plan_id in self._plans:
            return self._plans[plan_id]
        self.require_init()
        path = self.plan_file(plan_id)
        display = self.rel(path)
        try:
            st = os.stat(path, follow_symlinks=False)
        except FileNotFoundError:
            known = ", ".join(self.plan_ids()) or "none"
            raise NotFound(f"unknown plan {plan_id!r} (plans: {known}): see `flowgit plan list`") from None
        twins = self.plan_twins(plan_id)
        if twins:
            raise InvalidFile(f"{display}: {case_twin_message(twins, 'plan ids')}")
        cache = self._plan_cache(plan_id)
        entry = cache.get("plan")
        key = _stat_key(st)
        if entry and entry.get("stat") == key:
            raw, digest = entry["data"], entry["hash"]
            if entry.get("checked"):
                plan = Plan.from_dict(raw, display, trusted=True, task_values=entry["tasks"])
                loaded = LoadedPlan(plan, path, digest)
                self._plans[plan_id] = loaded
                return loaded
        else:
            from flowgit.formats import yamlio

            data = path.read_bytes()
            raw = yamlio.loads(yamlio.decode(data, display), display)
            digest = hashlib.sha256(data).hexdigest()
            cache["plan"] = {"stat": key, "data": raw, "hash": digest}
            self._cache_dirty.add(plan_id)
        try:
            plan = Plan.from_dict(raw, display)
        except InvalidFile as exc:
            raise _with_line(exc, raw, path, display) from None
        if plan.id != plan_id:
            raise InvalidFile(f"{display}: id {plan.id!r} does not match its directory {plan_id!r}: make them equal")
        # checked: keep the tasks as built, not as written (the rest of the file is small)
        cache["plan"]["data"] = {k: v for k, v in raw.items() if k != "tasks"}
        cache["plan"]["checked"] = True
        cache["plan"]["tasks"] = [dict(task.__dict__) for task in plan.tasks]
        self._cache_dirty.add(plan_id)
        loaded = LoadedPlan(plan, path, digest, raw)
        self._plans[plan_id] = loaded
        return loaded

    def forget(self, plan_id: str) -> None:
        self._plans.pop(plan_id, None)

    def forget_all(self) -> None:
        self._plans.clear()

    # ----- events --------------------------------------------------------------------------
    def read_log(self, plan_id: str, stream: str) -> LogRead:
        path = self.log_file(plan_id, stream)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return LogRead((), False, 0)
        return parse_log(data, self.rel(path))

    def plan_events(self, plan_id: str) -> tuple[Event, ...]:
        return self.read_log(plan_id, PLAN_LOG).events

    def records(self, plan_id: str) -> dict[str, TaskRecord]:
        """Each task log reduced to its record, reusing the cache for unchanged files."""
        name = f"{plan_id}@logs"  # '@' is never in an id: apart, so a transition need not load it
        logs: dict[str, Any] = self._plan_cache(name).setdefault("logs", {})
        out: dict[str, TaskRecord] = {}
        events_dir = self.safe("plans", plan_id, "events")
        if not events_dir.is_dir():
            return out
        seen = set()
        for entry in os.scandir(events_dir):
            if not entry.name.endswith(".jsonl") or entry.name == f"{PLAN_LOG}.jsonl":
                continue
            task = entry.name[:-6]
            if entry.is_symlink():
                continue
            key = _stat_key(entry.stat(follow_symlinks=False))
            hit = logs.get(task)
            if hit and hit[0] == key:  # a cached name was checked when it was stored
                seen.add(task)
                out[task] = TaskRecord.from_row(hit[1])
                continue
            if not is_valid_id(task):
                continue
            seen.add(task)
            read = parse_log(Path(entry.path).read_bytes(), self.rel(Path(entry.path)))
            rec = reduce_task(read.events)
            out[task] = rec
            logs[task] = [key, rec.to_row()]
            self._cache_dirty.add(name)
        for gone in set(logs) - seen:
            del logs[gone]
            self._cache_dirty.add(name)
        return out

    def graph_facts(self, plan_id: str) -> tuple[list[str], dict[str, float]]:
        """Execution order and critical-path rank of the plan's graph, cached with the plan."""
        loaded = self.load_plan(plan_id)
        entry = self._plan_cache(plan_id).get("plan") or {}
        if "order" in entry and entry.get("hash") == loaded.hash:
            return entry["order"], entry["rank"]
        from flowgit.core.graph import critical_rank, find_cycle, topo_order

        plan = loaded.plan
        deps = {t.id: t.depends_on for t in plan.tasks}
        deps.update({c.id: c.after for c in plan.checkpoints})
        local = {k: [d for d in v if d in deps] for k, v in deps.items()}
        cycle = find_cycle(local)
        if cycle:
            raise InvalidFile(f"{self.rel(loaded.path)}: dependency cycle {' -> '.join(cycle)}: "
                              "remove one of these dependencies")
        order = topo_order(local)
        rank = critical_rank(local, {t.id: t.hours for t in plan.tasks})
        if entry.get("hash") == loaded.hash:
            entry.update({"order": order, "rank": rank})
            self._cache_dirty.add(plan_id)
        return order, rank

    def state(self, plan_id: str, now: float | None = None, _seen: frozenset[str] = frozenset()) -> PlanState:
        if not _seen and self.journal.exists():
            self._settle_dead_merge()
        loaded = self.load_plan(plan_id)
        plan = loaded.plan
        order, rank = self.graph_facts(plan_id)
        external: dict[str, str] = {}
        if plan.has_external_deps:
            deps = {t.id: t.depends_on for t in plan.tasks}
            deps.update({c.id: c.after for c in plan.checkpoints})
            external = self._external_states(plan, deps, now, _seen | {plan_id})
        return evaluate(plan, self.records(plan_id), self.plan_events(plan_id),
                        time.time() if now is None else now, external, rank, order)

    def task_state(self, plan_id: str, task_id: str, now: float) -> PlanState | None:
        """The plan's phase and this one task's state from its own log only (dependencies
        unread): enough to check who holds it. None when it is not a plain task."""
        from dataclasses import replace

        plan = self.load_plan(plan_id).plan
        task = plan.task(task_id)
        if task is None:
            return None
        alone = replace(plan, tasks=(replace(task, depends_on=()),), checkpoints=())
        record = reduce_task(self.read_log(plan_id, task_id).events)
        return evaluate(alone, {task_id: record}, self.plan_events(plan_id), now, {}, {}, [task_id])

    def _external_states(self, plan: Plan, deps: Mapping[str, Sequence[str]], now: float | None,
                         seen: frozenset[str]) -> dict[str, str]:
        refs = {d for ds in deps.values() for d in ds if d not in deps}
        out: dict[str, str] = {}
        states: dict[str, PlanState | None] = {}
        for ref in sorted(refs):
            other, _, task = ref.partition("/")
            if other in seen or not is_valid_id(other) or (task and not is_valid_id(task)):
                out[ref] = "unknown"
                continue
            if other not in states:
                try:
                    states[other] = self.state(other, now, seen)
                except NotFound:
                    states[other] = None
            st = states[other]
            if st is None:
                out[ref] = "unknown"
            elif not task:
                out[ref] = "complete" if st.phase == "complete" else st.phase
            elif task in st.tasks:
                out[ref] = st.tasks[task].state
            elif task in st.checkpoints:
                out[ref] = st.checkpoints[task].state
            else:
                out[ref] = "unknown"
        return out

    def resolve(self, ref: str) -> tuple[str, str]:
        """TASKREF -> (plan, task). `TASK` alone must be unambiguous."""
        plan_id, task_id = split_ref(ref)
        if plan_id is not None:
            loaded = self.load_plan(plan_id)
            if loaded.plan.task(task_id) is None and loaded.plan.checkpoint(task_id) is None:
                raise NotFound(f"plan {plan_id} has no task {task_id!r}: see `flowgit status {plan_id}`")
            return plan_id, task_id
        owners = [p for p in self.plan_ids() if self.load_plan(p).plan.task(task_id)]
        if not owners:
            raise NotFound(f"no plan has a task {task_id!r}: see `flowgit status`")
        if len(owners) > 1:
            raise Ambiguous(f"task {task_id!r} is in plans {', '.join(owners)}: write PLAN/{task_id}")
        return owners[0], task_id

    # ----- the derived cache ---------------------------------------------------------------
    def _cache_path(self, plan_id: str) -> Path:
        return self.flow / ".cache" / f"{plan_id}.marshal"

    def _plan_cache(self, plan_id: str) -> dict[str, Any]:
        """marshal, not JSON: it loads twice as fast, and the file is local (gitignored),
        written only by flowgit through a rename; anything unreadable is rebuilt."""
        if plan_id not in self._cache:
            data: dict[str, Any] = {}
            path = self._cache_path(plan_id)
            try:
                if not path.is_symlink():
                    loaded = marshal.loads(path.read_bytes())
                    if isinstance(loaded, dict) and loaded.get("version") == CACHE_VERSION:
                        data = loaded
            except (OSError, ValueError, EOFError, TypeError):
                data = {}
            data["version"] = CACHE_VERSION
            self._cache[plan_id] = data
        return self._cache[plan_id]

    def save_cache(self) -> None:
        for plan_id in list(self._cache_dirty):
            if plan_id not in self._cache:
                continue
            path = self._cache_path(plan_id)
            try:
                path.parent.mkdir(exist_ok=True)
                if path.parent.is_symlink():
                    continue
                tmp = path.with_name(f".{plan_id}.{os.getpid()}.tmp")
                tmp.write_bytes(marshal.dumps(self._cache[plan_id]))
                os.replace(tmp, path)
            except (OSError, ValueError):
                pass  # the cache is an optimisation only
        self._cache_dirty.clear()

    # ----- writing -------------------------------------------------------------------------
    def lock(self) -> RepoLock:
        """The repository lock. Once held, a git operation in progress (merge, rebase,
        cherry-pick) refuses the write: checked under the lock, so our own merges never
        look like someone else's."""
        return RepoLock(self.dirs.common_dir, self.config.lock_timeout,
                        on_acquire=self.refuse_during_git_operation)

    def refuse_during_git_operation(self) -> None:
        self.undo_interrupted_merge()
        busy = git.operation_in_progress(self.dirs)
        if busy:
            raise GitBusy(
                f"{busy} is in progress in {self.root}: flowgit writes nothing until it is "
                "finished or aborted; run the command again then"
            )

    @property
    def journal(self) -> Path:
        return self.dirs.git_dir / JOURNAL

    def begin_merge(self, branch: str, logs: Sequence[Path]) -> None:
        """`run` is about to merge a task's branch and append `done` to these logs, then commit
        both: note what to take back should it die before the commit. Call under the lock."""
        sizes = {self.rel(p): p.stat().st_size for p in logs}
        self.journal.write_text(json.dumps({
            "paths": [], "merge": branch, "pid": os.getpid(), "sizes": sizes,
            "head": git.read_head(self.dirs), "tip": git.read_ref(self.dirs, f"refs/heads/{branch}")}))

    def end_merge(self) -> None:
        self.journal.unlink(missing_ok=True)

    def _merge_journal(self) -> dict[str, Any] | None:
        try:
            entry = json.loads(self.journal.read_text())
        except (OSError, ValueError):
            return None
        return entry if isinstance(entry, dict) and entry.get("merge") else None

    def _settle_dead_merge(self) -> None:
        """Readers too must not see a `done` whose merge a killed `run` never committed: when
        the journal says so and its writer is dead, undo it if the lock is free right now
        (otherwise read as is: the next writer undoes it)."""
        entry = self._merge_journal()
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
            with RepoLock(self.dirs.common_dir, 0):
                if self.undo_interrupted_merge(clear_git_locks=False):
                    self._cache.clear()
                    self._cache_dirty.clear()
                    self._plans.clear()
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
        entry = self._merge_journal()
        if entry is None:
            return False
        if clear_git_locks:
            self._clear_stale_git_locks(self.journal.stat().st_mtime)
        tip = entry.get("tip")
        if git.in_merge(self.dirs):
            if git.merge_head(self.dirs) != tip:
                return False  # someone else's merge: leave it, and the journal, alone
            for _ in range(20):  # the dead writer's `git commit` may still be letting go of the index
                abort = git.merge_abort(self.root)
                if abort.returncode == 0 or b"index.lock" not in abort.stderr:
                    break
                time.sleep(0.1)
            if abort.returncode != 0:
                return False
        if git.operation_in_progress(self.dirs):
            return False  # the user's rebase or cherry-pick: later
        logs = [(rel, size) for rel, size in (entry.get("sizes") or {}).items()
                if isinstance(rel, str) and isinstance(size, int) and rel.startswith(FLOW + "/")
                and ".." not in rel.split("/") and (self.root / rel).is_file()
                and not (self.root / rel).is_symlink()]
        merged = not isinstance(tip, str) or git.is_ancestor(self.root, tip, "HEAD")
        if merged:
            self.journal.write_text(json.dumps({"paths": [rel for rel, _ in logs], "pid": entry.get("pid")}))
            return True
        for rel, size in logs:
            if (self.root / rel).stat().st_size > size:
                repair_torn(self.root / rel, size)
        self.journal.unlink(missing_ok=True)
        return True

    def recover(self) -> str | None:
        """Commit what a crashed command appended but did not commit. Call under the lock."""
        if not self.journal.exists():
            return None
        try:
            paths = json.loads(self.journal.read_text()).get("paths", [])
        except ValueError:
            paths = []
        pending = [p for p in paths if isinstance(p, str) and p.startswith(FLOW + "/")
                   and (self.root / p).exists()]
        # The command that wrote the journal died (we hold the lock it held): a git child
        # killed with it may have left the index or ref locks, which would fail every commit.
        self._clear_stale_git_locks(self.journal.stat().st_mtime)
        sha = None
        if pending:
            for p in pending:
                self._repair_if_torn(p)
            # a repaired torn line may leave the file as committed, and a commit cut off
            # after moving HEAD leaves only the index behind: commit only what differs
            changed = set(git.changed_paths(self.root, FLOW))
            todo = [p for p in pending if p in changed]
            if todo:
                git.add(self.root, todo)
                if git.head(self.root) is not None:
                    todo = [p for p in todo if p in set(git.staged_paths(self.root, todo))]
            if todo:
                sha = git.commit_paths(self.root, todo, "flow: recover events appended before a crash\n\nFlow-Event: recover")
        self.journal.unlink(missing_ok=True)
        return sha

    def _clear_stale_git_locks(self, since: float) -> list[str]:
        """Remove git lock files created by a flowgit command that died mid-commit: only
        those created after its journal, and only once they stop changing (a git child that
        outlived its parent finishes in a moment). Call under the lock, with a journal."""
        candidates = git.lock_files(self.dirs)
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
        path = self.root / rel
        data = path.read_bytes()
        if data.rfind(b"\n") + 1 < len(data):
            self.heal_log(path)

    def plan_edited(self, plan_id: str) -> str | None:
        """The plan file's path when it has uncommitted edits of the user's own: writing it, or
        acting on it, would put them in flowgit's commit (ADR 0008)."""
        rel = self.rel(self.plan_file(plan_id))
        return rel if git.changed_paths(self.root, rel) else None

    def ensure_log_intact(self, path: Path, then: str = "run the command again") -> None:
        """Before appending to (or rewriting) a log: a torn line is cut; committed lines that
        were cut or edited come back from HEAD, and the caller, whose decision was made on the
        damaged log, stops (exit 4)."""
        if self.log_needs_care(path) and self.heal_log(path) == "restored":
            raise RaceLost(f"{self.rel(path)}: committed events had been cut or edited and are "
                           f"restored from HEAD; {then}")

    def log_needs_care(self, path: Path) -> bool:
        """A torn last line, or fewer bytes than git's index recorded for the file (lines cut
        since it was last committed): both cheap to see, no subprocess."""
        size = path.stat().st_size
        if size:
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    return True
        recorded = git.indexed_size(self.dirs, self.rel(path))
        return recorded is not None and size < recorded

    def heal_log(self, path: Path) -> str | None:
        """Make a log append-only again: cut a torn last line (a crash mid-append), but never
        into what HEAD has; committed lines that were cut or edited come back from HEAD, and
        complete lines appended after them are kept. Says what it did: "torn", "restored"."""
        data = path.read_bytes()
        whole = data[: data.rfind(b"\n") + 1]
        head = git.show_blob(self.root, "HEAD", self.rel(path)) or b""
        committed = head[: head.rfind(b"\n") + 1]  # a torn line committed by hand is no event
        if whole.startswith(committed):
            if len(whole) == len(data):
                return None
            repair_torn(path, len(whole))
            return "torn"
        # lines past HEAD's count that are whole events HEAD lacks were appended since: keep them
        known = {_event_id(line) for line in committed.splitlines()}
        extra = [line + b"\n" for line in whole.splitlines()[committed.count(b"\n"):]
                 if (ident := _event_id(line)) is not None and ident not in known]
        write_atomic(path, committed + b"".join(extra))
        return "restored"

    def commit(
        self, appends: Mapping[Path, Sequence[Event]], files: Mapping[Path, bytes],
        message: str, *, commit: bool = True,
    ) -> str | None:
        """Append events (fsynced), write whole files atomically, and commit just those paths.
        Call under the lock, after deciding. A journal makes a crash between append and
        commit recoverable by the next command."""
        paths = [self.rel(p) for p in [*appends, *files]]
        self.journal.write_text(json.dumps({"paths": paths, "pid": os.getpid()}))
        sizes: dict[Path, int | None] = {}
        olds: dict[Path, bytes | None] = {}
        for path in appends:
            self._no_symlink(path)
            if path.exists():
                try:
                    self.ensure_log_intact(path, "run the command again to decide on them")
                except RaceLost:
                    self.journal.unlink(missing_ok=True)
                    raise
                sizes[path] = path.stat().st_size
            else:
                sizes[path] = None
        for path, events in appends.items():
            append(path, events)
        for path, content in files.items():
            self._no_symlink(path)
            olds[path] = path.read_bytes() if path.exists() else None
            write_atomic(path, content)
        if not commit:
            self.journal.unlink(missing_ok=True)
            return None
        created = [self.rel(p) for p, size in sizes.items() if size is None]
        created += [self.rel(p) for p, old in olds.items() if old is None]
        try:
            sha = git.commit_paths(self.root, paths, message, created, self.dirs)
        except FlowError:
            # the commit did not happen (another git command held the index, say): take the
            # writes back, so a command that reported failure leaves nothing to commit later
            if self._rollback(paths, sizes, olds):
                self.journal.unlink(missing_ok=True)
            raise
        self.journal.unlink(missing_ok=True)
        return sha

    def _rollback(self, paths: Sequence[str], sizes: Mapping[Path, int | None],
                  olds: Mapping[Path, bytes | None]) -> bool:
        """Undo an uncommitted write. False (and the journal stays) if HEAD has it after all."""
        try:
            if all(git.show_blob(self.root, "HEAD", rel) == (self.root / rel).read_bytes() for rel in paths):
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
            git.unstage(self.root, paths)
            return True
        except (OSError, FlowError):
            return False


def _with_line(exc: InvalidFile, raw: Any, path: Path, display: str, kind: str = "plan") -> InvalidFile:
    """The schema checker's message for a broken plan or config, with the line `validate`
    gives (only on this error path: it imports jsonschema)."""
    from flowgit.formats.schemacheck import schema_errors

    try:
        errors = schema_errors(kind, raw, path.read_text(encoding="utf-8"), display)
    except (OSError, ValueError):
        errors = []
    return InvalidFile(errors[0]) if errors else exc


def _event_id(line: bytes) -> str | None:
    """The id of one event line; None for a fragment or anything else that is no event."""
    try:
        ident = json.loads(line).get("id")
    except (ValueError, AttributeError):
        return None
    return ident if isinstance(ident, str) else None


def write_atomic(path: Path, content: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink():
        raise InvalidFile(f"{path}: is a symlink: flowgit never writes through one")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, content)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


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


def iter_flow_files(repo: FlowRepo) -> Iterator[Path]:
    """Every file under .flow/, and every symlinked directory (never entered) so that it is
    reported rather than silently skipped."""
    for dirpath, dirnames, filenames in os.walk(repo.flow, followlinks=False):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d != ".cache" and d not in links]
        for name in links + filenames:
            yield Path(dirpath) / name


def plan_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def actor_for(repo: FlowRepo, worker: str | None) -> str:
    if worker is not None:  # given, even empty: never silently someone else
        return check_actor(worker)
    name = os.environ.get("FLOWGIT_ACTOR") or git.user_email(repo.root)
    if not name:
        raise NoActor("who is acting? pass --worker NAME, set FLOWGIT_ACTOR, or set git user.email")
    return check_actor(name)


def automatic_actor(repo: FlowRepo) -> str:
    """Who signs automatic moves (advance, watch): the configured actor, else 'flowgit'."""
    try:
        return actor_for(repo, None)
    except FlowError:
        return "flowgit"


def iter_events_all(repo: FlowRepo, plan_id: str) -> Iterable[Event]:
    events_dir = repo.safe("plans", plan_id, "events")
    if not events_dir.is_dir():
        return []
    out: list[Event] = []
    for entry in sorted(os.scandir(events_dir), key=lambda e: e.name):
        if entry.name.endswith(".jsonl") and not entry.is_symlink():
            out.extend(repo.read_log(plan_id, entry.name[:-6]).events)
    return out
