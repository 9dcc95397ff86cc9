"""The `.flow/` directory of one repository: safe paths, the config, plans and event logs read
through a derived cache, the state they fold to, and the doors to the lock and to writing."""
from __future__ import annotations

import os
import stat
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, Iterator, Mapping, Sequence, TypeVar

from flowgit import git
from flowgit.clock import wall_now
from flowgit.core.events import PLAN_LOG, BadLine, Event, LogRead, parse_log
from flowgit.core.fold import PlanState, TaskRecord, evaluate, fold_log
from flowgit.core.logfold import common_row, fold_task_log
from flowgit.core.planstate import RECORD_FIELDS, Records, done_codes
from flowgit.core.model import Config, Plan, case_twin_message
from flowgit.core.semantic import upstream
from flowgit.errors import (
    Ambiguous,
    FlowError,
    GitBusy,
    InvalidFile,
    NoActor,
    NotFound,
    NotInitialised,
)
from flowgit.ids import check_actor, check_id, id_problem, is_valid_id, split_ref
from flowgit.store import notices
from flowgit.store import planindex
from flowgit.store.cache import DerivedCache, gc_paused
from flowgit.store.evalcache import evaluated
from flowgit.store.journal import Journal
from flowgit.store.lock import RepoLock
from flowgit.store.planindex import with_line as _with_line
from flowgit.store.planpin import LoadedPlan as LoadedPlan  # where it is read from: planpin
from flowgit.store.planpin import plan_ids as recorded_plan_ids
from flowgit.store.planpin import source as plan_source
from flowgit.store.state import StateStore

if TYPE_CHECKING:  # the write door is imported by what writes: not by status, next or events
    from flowgit.store.writing import Write

FLOW = ".flow"
CONFIG_CACHE = "_config"
T = TypeVar("T")


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


class FlowRepo:
    """One repository's `.flow/`. Reads are cached by file size+mtime+inode; deleting the
    cache changes no answer."""

    def __init__(self, start: Path) -> None:
        self.dirs = git.find_dirs(start)
        self.root = self.dirs.root
        self.flow = self.root / FLOW
        self._config: Config | None = None
        self._followed: tuple[Config, str] | None = None
        # never in the work tree (a read leaves `git status` clean): this work tree's derivations
        # in its own git dir, the plan index (checked by content) in the common one (ADR 0012)
        self.cache = DerivedCache(self.dirs.git_dir / "flowgit" / "cache", self.dirs.common_dir / "flowgit")
        self.plan_cache = self.cache.beside(self.dirs.common_dir / "flowgit" / "plans")
        self.journal = Journal(self)
        self._plans: dict[str, LoadedPlan] = {}
        self.evaluated_as: dict[str, str] = {}  # plan -> the kept evaluation its last state is (evalcache)
        self._state_store: StateStore | None | bool = False  # False: not looked at yet

    # ----- paths ---------------------------------------------------------------------------
    def rel(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def safe(self, *parts: str) -> Path:
        """A path under .flow/ whose existing components are real directories, not symlinks."""
        path = self.flow
        self.refuse_symlink(path)
        for part in parts:
            path = path / part
            self.refuse_symlink(path)
        return path

    def refuse_symlink(self, path: Path) -> None:
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
        """The config execution follows: in format 2, the one approved with a plan and recorded
        in the state, or the default branch's with approvals off; the work tree's otherwise
        (store/configpin.py says which keys come from where)."""
        if self._followed is None:
            work = self.work_config
            if work.version != 2:
                return work
            from flowgit.store import configpin

            self._followed = configpin.followed(self, work)
        return self._followed[0]

    @property
    def config_source(self) -> str:
        """Where `config` was read: "work tree", "state" or "default branch"."""
        self.config
        return self._followed[1] if self._followed is not None else "work tree"

    @property
    def work_config(self) -> Config:
        """This work tree's config.yaml, parsed once per change (the derived cache keeps the
        YAML parser off the hot path)."""
        if self._config is None:
            path = self.safe("config.yaml")
            try:
                key: list[int] | None = _stat_key(os.stat(path, follow_symlinks=False))
            except FileNotFoundError:
                key = None
            cache = self.cache.entry(CONFIG_CACHE)
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
                self.cache.changed(CONFIG_CACHE)
            self._config = Config.from_dict(data, self.rel(path))
        return self._config

    def work_config_data(self) -> Any:
        """This work tree's config.yaml as parsed and checked (None without one)."""
        self.work_config
        return self.cache.entry(CONFIG_CACHE).get("data")

    def plan_ids(self) -> list[str]:
        self.require_init()
        plans = self.safe("plans")
        here = [] if not plans.is_dir() else [
            e.name for e in os.scandir(plans)
            if is_valid_id(e.name) and e.is_dir(follow_symlinks=False)
            and (Path(e.path) / "plan.yaml").exists()
        ]
        here += recorded_plan_ids(self) if self.state_store is not None else []  # format 2: ADR 0011
        return sorted(set(here))

    def plan_twins(self, plan_id: str) -> list[str]:
        """The plan directories whose names differ from `plan_id` only by case, with it."""
        folded, plans = plan_id.casefold(), self.safe("plans")
        twins = sorted(n for n in (os.listdir(plans) if plans.is_dir() else []) if n.casefold() == folded)
        return twins if len(twins) > 1 else []

    def left_out_plans(self) -> dict[str, str]:
        """Entries of plans/ that are never read, and why (a symlink, a name no id can have):
        listings say they were left out."""
        plans = self.safe("plans")
        if not plans.is_dir():
            return {}
        out = {}
        for e in sorted(os.scandir(plans), key=lambda e: e.name):
            if e.is_symlink():
                out[e.name] = ("is a symlink and was left out: flowgit never follows symlinks in .flow/ "
                               "(make it a real directory)")
            elif e.is_dir() and not is_valid_id(e.name) and (Path(e.path) / "plan.yaml").exists():
                out[e.name] = (f"was left out: its name is no plan id: {id_problem(e.name)} "
                               "(`flowgit validate` says more)")
        return out

    def load_plan(self, plan_id: str) -> LoadedPlan:
        if plan_id in self._plans:
            return self._plans[plan_id]
        self.require_init()
        path = self.plan_file(plan_id)
        src = plan_source(self, plan_id)  # where the bytes come from (format 2: ADR 0011)
        if src is None:
            known = ", ".join(self.plan_ids()) or "none"
            raise NotFound(f"unknown plan {plan_id!r} (plans: {known}): see `flowgit plan list`")
        display = src.display
        if src.where == "work tree" and (twins := self.plan_twins(plan_id)):
            raise InvalidFile(f"{display}: {case_twin_message(twins, 'plan ids')}")
        with gc_paused():
            loaded = planindex.load(self.plan_cache, plan_id, path, src)
        self._plans[plan_id] = loaded
        return loaded

    def forget(self, plan_id: str) -> None:
        self._plans.pop(plan_id, None)

    def forget_all(self) -> None:
        self._plans.clear()

    # ----- events --------------------------------------------------------------------------
    @property
    def state_store(self) -> StateStore | None:
        """The state branch when the config says `version: 2` (ADR 0011), else None: the
        logs are files in the branch (format 1)."""
        if self._state_store is False:
            try:
                cfg = self.work_config  # where the state is: never from the state itself
            except FlowError:  # doctor and validate report it; every other command stopped on it
                return None
            self._state_store = StateStore(self, cfg.state_branch) if cfg.version == 2 else None
        return self._state_store  # type: ignore[return-value]

    def log_display(self, plan_id: str, stream: str) -> str:
        """Where a log is, in the words messages use."""
        store = self.state_store
        return store.display(plan_id, stream) if store else self.rel(self.log_file(plan_id, stream))

    def log_streams(self, plan_id: str) -> list[str]:
        """The streams (task ids, and PLAN_LOG) that have a log, sorted."""
        store = self.state_store
        if store is not None:
            return sorted(store.blobs(plan_id))
        events_dir = self.safe("plans", plan_id, "events")
        if not events_dir.is_dir():
            return []
        return sorted(e.name[:-6] for e in os.scandir(events_dir)
                      if e.name.endswith(".jsonl") and not e.is_symlink())

    def has_log(self, plan_id: str, stream: str) -> bool:
        store = self.state_store
        if store is not None:
            return stream in store.blobs(plan_id)
        return self.log_file(plan_id, stream).exists()

    def log_bytes(self, plan_id: str, stream: str) -> bytes | None:
        store = self.state_store
        if store is not None:
            check_id(plan_id, "plan id")
            if stream != PLAN_LOG:
                check_id(stream, "task id")
            return store.read(plan_id, stream)
        try:
            return self.log_file(plan_id, stream).read_bytes()
        except FileNotFoundError:
            return None

    def read_log(self, plan_id: str, stream: str) -> LogRead:
        if self.state_store is None:  # format 1: a log in the work tree may be a symlink
            path = self.safe("plans", check_id(plan_id, "plan id"), "events")
            path = path / f"{stream if stream == PLAN_LOG else check_id(stream, 'task id')}.jsonl"
            if path.is_symlink():  # never read, and what it holds is held, as a task's log is
                rel = self.rel(path)
                notices.symlinked(rel, f"plan {plan_id} is held" if stream == PLAN_LOG
                                  else f"task {plan_id}/{stream} is held")
                return LogRead((), False, 0, (BadLine(rel, "a symlink, which flowgit never follows"),))
        data = self.log_bytes(plan_id, stream)
        if data is None:
            return LogRead((), False, 0)
        read = parse_log(data, self.log_display(plan_id, stream), plan_id, None if stream == PLAN_LOG else stream)
        if read.bad:
            notices.unreadable(read, f"plan {plan_id} is held" if stream == PLAN_LOG
                               else f"task {plan_id}/{stream} is held")
        return read

    def counted_plan_events(self, plan_id: str, events: Sequence[Event]) -> Sequence[Event]:
        """The plan events the fold reads: with approvals.via merge or approvals.signed, only
        the approvals git vouches for (store/approvals.py)."""
        try:
            cfg = self.config
        except FlowError:
            return events  # the commands that need the config stop with its reason
        if cfg.approvals_via == "events" and not cfg.approvals_signed:
            return events
        from flowgit.store.approvals import counted

        return counted(self, plan_id, events)

    def plan_events(self, plan_id: str) -> tuple[Event, ...]:
        return self.read_log(plan_id, PLAN_LOG).events

    def records(self, plan_id: str) -> Mapping[str, TaskRecord]:
        """Each task log reduced to its record, reusing the cache for unchanged files."""
        name = f"{plan_id}@logs"  # '@' is never in an id: apart, so a transition need not load it
        logs: dict[str, Any] = self.cache.entry(name).setdefault("logs", {})
        out: dict[str, TaskRecord] = {}
        if self.state_store is not None:
            return self._state_records(plan_id, name, logs)
        events_dir = self.safe("plans", plan_id, "events")
        if not events_dir.is_dir():
            return out
        seen = set()
        for entry in os.scandir(events_dir):
            if not entry.name.endswith(".jsonl") or entry.name == f"{PLAN_LOG}.jsonl":
                continue
            task = entry.name[:-6]
            if entry.is_symlink():
                if is_valid_id(task):  # held, not skipped: a skipped log could free a claimed task
                    seen.add(task)
                    out[task] = TaskRecord(unreadable=self.rel(Path(entry.path)))
                    notices.symlinked(self.rel(Path(entry.path)), f"task {plan_id}/{task} is held")
                continue
            key = _stat_key(entry.stat(follow_symlinks=False))
            hit = logs.get(task)
            cached = TaskRecord.from_row(hit[1]) if hit and hit[0] == key else None
            if cached is not None:  # a cached name was checked when it was stored
                seen.add(task)
                out[task] = cached
                continue
            if not is_valid_id(task):
                continue
            seen.add(task)
            read = parse_log(Path(entry.path).read_bytes(), self.rel(Path(entry.path)), plan_id, task)
            out[task] = rec = fold_log(read)
            if read.bad:  # read again each time, so each command names the line
                notices.unreadable(read, f"task {plan_id}/{task} is held")
                continue
            logs[task] = [key, rec.to_row()]
            self.cache.changed(name)
        for gone in set(logs) - seen:
            del logs[gone]
            self.cache.changed(name)
        return out

    def _state_records(self, plan_id: str, name: str, logs: dict[str, Any]) -> Mapping[str, TaskRecord]:
        """Format 2: records by blob id (a blob never changes), each built when first read."""
        store = self.state_store
        assert store is not None
        listing = {s: b for s, b in store.blobs(plan_id).items() if s != PLAN_LOG}
        rows: dict[str, tuple[Any, ...]] = {}
        fresh: dict[str, TaskRecord] = {}
        missing = []
        width = len(RECORD_FIELDS)
        for task, blob in listing.items():
            hit = logs.get(task)
            if hit and hit[0] == blob and type(hit[1]) is tuple and len(hit[1]) == width:
                rows[task] = hit[1]
            else:
                missing.append(task)
        if missing:
            contents = store.read_many([listing[t] for t in missing])
            for task in missing:
                data = contents.get(listing[task], b"")
                row = common_row(data, plan_id, task)  # claimed, then done: no event built
                if row is not None:
                    rows[task] = row
                    logs[task] = [listing[task], row]
                    continue
                rec, read = fold_task_log(data, plan_id, task, store.display)
                fresh[task] = rec  # a clean log in one pass (core/logfold.py), else line by line
                if read.bad:
                    notices.unreadable(read, f"task {plan_id}/{task} is held")
                    logs.pop(task, None)
                    continue
                logs[task] = [listing[task], rec.to_row()]
            self.cache.changed(name)
        for gone in set(logs) - set(listing):
            del logs[gone]
            self.cache.changed(name)
        return Records(rows, fresh)

    def graph_facts(self, plan_id: str) -> tuple[list[str], dict[str, float]]:
        """Execution order and critical-path rank of the plan's graph, cached with the plan."""
        loaded = self.load_plan(plan_id)
        entry = self.plan_cache.entry(f"{plan_id}@graph")
        if entry.get("hash") == loaded.hash and isinstance(entry.get("order"), list) \
                and isinstance(entry.get("rank"), dict):
            return entry["order"], entry["rank"]
        from flowgit.core.index import plan_column
        from flowgit.core.model import estimate_hours
        from flowgit.core.ranks import order_rank, weights_of

        plan = loaded.plan
        cycle, order, rank = order_rank(plan_column(plan, "id"), plan_column(plan, "depends_on"),
                                        weights_of(plan_column(plan, "estimate"), estimate_hours),
                                        [(c.id, c.after) for c in plan.checkpoints])
        if cycle:
            raise InvalidFile(f"{loaded.display or self.rel(loaded.path)}: dependency cycle {' -> '.join(cycle)}: "
                              "remove one of these dependencies")
        entry.clear()
        entry.update({"hash": loaded.hash, "order": order, "rank": rank})
        self.plan_cache.changed(f"{plan_id}@graph")
        return order, rank

    def state(self, plan_id: str, now: float | None = None, _seen: frozenset[str] = frozenset(),
              upto: str | None = None) -> PlanState:  # upto: one task and what it waits on only
        if not _seen and self.journal.exists():
            self.journal.settle_dead_merge()
        loaded = self.load_plan(plan_id)
        with gc_paused():  # upto: what it waits on, not followed past a done or skipped task
            early = None if upto is None else self.records(plan_id)
        plan = loaded.plan if upto is None else upstream(loaded.plan, upto, early)
        external: dict[str, str] = {}
        if plan.has_external_deps:
            deps = {t.id: t.depends_on for t in plan.tasks}
            deps.update({c.id: c.after for c in plan.checkpoints})
            external = self._external_states(plan, deps, now, _seen | {plan_id})
        plan_log = self.read_log(plan_id, PLAN_LOG)
        with gc_paused():
            at = wall_now() if now is None else now
            events = self.counted_plan_events(plan_id, plan_log.events)
            if early is not None:  # a part of the plan: evaluated as it is
                return evaluate(plan, early, events, at, external, None, None, plan_log.unreadable,
                                self._unreleased(early))
            return evaluated(self, plan_id, plan, loaded.hash, lambda: self.records(plan_id), events, at,
                             external, lambda: self.graph_facts(plan_id), plan_log.unreadable,
                             self._unreleased)

    def _unreleased(self, records: Mapping[str, TaskRecord]) -> frozenset[str]:
        """Format 2: tasks whose `done` names a code commit this clone does not have yet (a
        fetch of the state came before the code): their dependents wait for it."""
        codes = done_codes(records)
        if not codes:
            return frozenset()
        entry = self.cache.entry("@commits")
        present: dict[str, bool] = entry.setdefault("present", {})
        unknown = sorted({c for c in codes.values() if c not in present})
        if unknown:
            from flowgit import git_state

            have = git_state.present_commits(self.root, unknown)
            for commit in have:
                present[commit] = True
            self.cache.changed("@commits")
        return frozenset(task for task, code in codes.items() if code not in present)

    def task_state(self, plan_id: str, task_id: str, now: float) -> PlanState | None:
        """The plan's phase and this one task's state from its own log only (dependencies
        unread): enough to check who holds it. None when it is not a plain task."""
        plan = self.load_plan(plan_id).plan
        task = plan.task(task_id)
        if task is None:
            return None
        alone = replace(plan, tasks=(replace(task, depends_on=()),), checkpoints=())
        record = fold_log(self.read_log(plan_id, task_id))
        plan_log = self.read_log(plan_id, PLAN_LOG)
        return evaluate(alone, {task_id: record}, self.counted_plan_events(plan_id, plan_log.events), now,
                        {}, {}, [task_id], plan_log.unreadable)

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

    # ----- writing -------------------------------------------------------------------------
    def lock(self) -> RepoLock:
        """The repository lock. Once held, a git operation in progress (merge, rebase,
        cherry-pick) refuses the write: checked under the lock, so our own merges never
        look like someone else's."""
        return RepoLock(self.dirs.common_dir, self.config.lock_timeout,
                        on_acquire=self.refuse_during_git_operation)

    def refuse_during_git_operation(self) -> None:
        self.journal.undo_interrupted_merge()
        self.journal.undo_interrupted_sync()
        busy = git.operation_in_progress(self.dirs)
        if busy:
            raise GitBusy(
                f"{busy} is in progress in {self.root}: flowgit writes nothing until it is "
                "finished or aborted; run the command again then"
            )

    def writing(self, plan_id: str | None = None, *, commit: bool = True,
                prepare: Callable[[], object] | None = None,
                then: Callable[[str | None], object] | None = None) -> ContextManager[Write]:
        """The one door for writes: see `flowgit.store.writing`."""
        from flowgit.store.writing import writing

        return writing(self, plan_id, commit=commit, prepare=prepare, then=then)

    def write(self, plan_id: str | None, decide: Callable[[Write], T]) -> tuple[T, str | None]:
        """The write door for a decision written as a function of the `Write`."""
        from flowgit.store.writing import write

        return write(self, plan_id, decide)

    def save_cache(self) -> None:
        self.cache.save()
        self.plan_cache.save()

    def plan_edited(self, plan_id: str) -> str | None:
        """The plan file's path when it has uncommitted edits of the user's own: writing it, or
        acting on it, would put them in flowgit's commit (ADR 0008)."""
        rel = self.rel(self.plan_file(plan_id))
        return rel if git.changed_paths(self.root, rel) else None


def iter_flow_files(repo: FlowRepo) -> Iterator[Path]:
    """Every file under .flow/, and every symlinked directory (never entered) so that it is
    reported rather than silently skipped."""
    for dirpath, dirnames, filenames in os.walk(repo.flow, followlinks=False):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        dirnames[:] = [d for d in dirnames if d != ".cache" and d not in links]
        for name in links + filenames:
            yield Path(dirpath) / name


def plan_hash(data: bytes) -> str:
    import hashlib  # a plan parsed afresh, an approval: not a warm command's start (ADR 0007)

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
    out: list[Event] = []
    store = repo.state_store
    if store is not None:
        listing = store.blobs(plan_id)
        contents = store.read_many(list(listing.values()))
        for stream, blob in sorted(listing.items()):
            read = parse_log(contents.get(blob, b""), store.display(plan_id, stream), plan_id,
                             None if stream == PLAN_LOG else stream)
            out.extend(read.events)
        return out
    for stream in repo.log_streams(plan_id):
        out.extend(repo.read_log(plan_id, stream).events)
    return out
