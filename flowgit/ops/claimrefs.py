"""Claim refs (ADR 0013): across clones a `claim --sync` is won by a compare-and-swap on a ref
of its own task, `refs/heads/<state branch>-claims/<plan>/<task>`, not on the one state
branch, so claims of different tasks never race each other.

- A claim ref's commit carries the claim: its message holds the one `task.claimed` event line
  (its tree is the claimer's state tree: no new object), its parent the claim it replaced.
  It is pushed with `--force-with-lease` expecting the value this clone fetched (none: only
  if no one created it), so of two clones claiming one task exactly one wins, and a task
  claimed again after a release or an expired lease expects the old claim.
- `sync` and `claim --sync` fetch the plan's claim refs with the state branch in one fetch
  and fold the claims they had not seen into the local state branch (union by event id):
  reads, the watcher and `status` keep reading `flow/state` alone.
- The state branch no longer decides a claim: `claim --sync` pushes it in the same `git push`
  without its own new claim, and a rejection of that part waits for the next sync.
- Everything fetched is untrusted: a claim ref whose name is no task id is never read; one
  that is not a commit, or whose message does not hold exactly one `task.claimed` event of
  that plan and task, holds its own task, as an unreadable line of a log does: nothing of it
  is folded, `sync` warns in one line naming it and the `git push --delete` that removes it,
  and a claim of that task is refused with that line (exit 1); every other task goes on.
  So does a ref below a claim ref (`P/T/x`), beside which git refuses to create `P/T`.
- A claim ref whose event the remote's state branch already held when this clone fetched it,
  longer than `PRUNE_AFTER` ago by the event's time, is deleted by the next `sync` (with a lease:
  never a claim it has not seen), and by one `claim --sync` in 16 in its own push, so refs do
  not pile up."""
from __future__ import annotations

import json
import os
import random
from typing import Any, Iterable

from flowgit import git, git_state
from flowgit.core.events import Event, parse_log
from flowgit.errors import InvalidFile, PushFailed
from flowgit.formats.jsonlmerge import event_ids, union_logs
from flowgit.ids import is_valid_id
from flowgit.store.repo import FlowRepo
from flowgit.store.state import StateStore, log_path

MAX_CLAIM_COMMIT = 64 * 1024  # a claim commit is a few hundred bytes
PRUNE_AFTER = 600.0  # seconds between a claim reaching the remote's state branch and its ref's deletion
PRUNE_AT_ONCE = 64
PRUNE_CHANCE = 1 / 16  # of a `claim --sync` also deleting, in its push, what `sync` would prune
RECORD = "claims-folded.json"


def _store(repo: FlowRepo) -> StateStore:
    store = repo.state_store
    assert store is not None
    return store


def namespace(store: StateStore) -> str:
    """The branch-name prefix of the claim refs (`flow/state-claims/`)."""
    return f"{store.branch}-claims/"


def remote_ref(store: StateStore, plan: str, task: str) -> str:
    return f"refs/heads/{namespace(store)}{plan}/{task}"


def tracking_prefix(store: StateStore, remote: str, plan: str | None = None) -> str:
    return f"refs/remotes/{remote}/{namespace(store)}" + (f"{plan}/" if plan else "")


def fetch_specs(store: StateStore, remote: str, plan: str | None) -> list[tuple[str, str]]:
    """The (remote, local) glob pair that fetches one plan's claim refs (every plan's: None)."""
    mid = f"{plan}/*" if plan else "*"
    return [(f"refs/heads/{namespace(store)}{mid}", f"{tracking_prefix(store, remote)}{mid}")]


# ----- what this clone remembers (.git/flowgit/) -------------------------------------------
def _read_json(repo: FlowRepo, name: str) -> Any:
    """A file of this clone's, read as JSON; None when it is missing or not JSON."""
    try:
        return json.loads((git_state.state_dir(repo.dirs) / name).read_text())
    except (OSError, ValueError):
        return None


def _write_json(repo: FlowRepo, name: str, data: Any) -> None:
    """Replace a file of this clone's at once (a reader sees the old text or the new)."""
    path = git_state.state_dir(repo.dirs) / name
    tmp = path.with_name(f"{name}.{os.getpid()}")
    try:
        tmp.write_text(json.dumps(data, sort_keys=True))
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def load_record(repo: FlowRepo) -> dict[str, list[Any]]:
    """tracking ref -> [commit, event id, event time] of the claim last folded from it."""
    data = _read_json(repo, RECORD)
    return {k: v for k, v in data.items() if isinstance(v, list) and len(v) == 3} if isinstance(data, dict) else {}


def save_record(repo: FlowRepo, record: dict[str, list[Any]]) -> None:
    _write_json(repo, RECORD, record)


SEEN = "claims-seen"
SEEN_AT_MOST = 256  # workers remembered: names come from other clones' claims
CROWD_AT_MOST = 32  # the most recent of them a claim shares the ready tasks with (its cost grows with them)


def seen_others(repo: FlowRepo, names: Iterable[str], now: float | None = None) -> None:
    """Note that this clone just folded claims of the workers `names` (see `workers_lately`)."""
    import time

    now = time.time() if now is None else now
    seen = _seen(repo)
    seen.update({name: now for name in names})
    kept = dict(sorted(seen.items(), key=lambda kv: -kv[1])[:SEEN_AT_MOST])
    try:
        _write_json(repo, SEEN, kept)
    except OSError:
        pass  # a hint for the next claim, not a record


def _seen(repo: FlowRepo) -> dict[str, float]:
    data = _read_json(repo, SEEN)
    if not isinstance(data, dict):
        return {}
    return {k: float(v) for k, v in data.items()  # a time: an int past a float's range is none
            if isinstance(k, str) and (type(v) is float or type(v) is int and abs(v) < 2 ** 63)}


def workers_lately(repo: FlowRepo, within: float, now: float | None = None) -> list[str]:
    """The other workers whose claims this clone folded in the last `within` seconds, sorted:
    they claim from the same state as this one, so its next plan claim takes from its own
    share of the ready tasks (core/lifecycle `owner`), or spreads (ADR 0006, 0013)."""
    import time

    now = time.time() if now is None else now
    recent = sorted(((at, name) for name, at in _seen(repo).items() if 0 <= now - at < within), reverse=True)
    return sorted(name for _, name in recent[:CROWD_AT_MOST])


def others_lately(repo: FlowRepo, within: float) -> int:
    """How many other workers claimed beside this clone lately (`workers_lately`)."""
    return len(workers_lately(repo, within))


PASSED = "claims-passed"
OVERDUE_AFTER = 3  # claims of this clone that passed over a task before it takes it (ADR 0013 Shares)
PASSED_AT_MOST = 64  # tasks a plan
PASSED_PLANS = 16  # plans, the ones claimed last: a clone's workers may take turns between plans


def _passed(repo: FlowRepo) -> list[tuple[str, dict[str, int]]]:
    """(plan, counts) for each plan this clone's last claims noted, the latest first. The file
    is a JSON list of [plan, {task: count}]; a sixth-session clone's {plan: counts} still reads."""
    data = _read_json(repo, PASSED)
    pairs = list(data.items()) if isinstance(data, dict) else data if isinstance(data, list) else []
    out: list[tuple[str, dict[str, int]]] = []
    for pair in pairs[:PASSED_PLANS]:
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[0], str)
                and isinstance(pair[1], dict)):
            return []  # not a file this code wrote: a hint, so none
        out.append((pair[0], {k: v for k, v in pair[1].items() if isinstance(k, str) and isinstance(v, int)
                              and not isinstance(v, bool) and 0 < v < 1024}))
    return out


def passed_over(repo: FlowRepo, plan: str) -> dict[str, int]:
    """The ready tasks of `plan` this clone's last claims of it passed over (left to the worker
    whose share they are), with how many claims in a row did: one still free after
    `OVERDUE_AFTER` is its owner's no more (a worker that stopped, a name that never claims).
    Kept per plan (the last `PASSED_PLANS`): a claim of another plan resets nothing."""
    return next((counts for name, counts in _passed(repo) if name == plan), {})


def note_passed(repo: FlowRepo, plan: str, ahead: list[str], before: dict[str, int]) -> None:
    """After a won claim of `plan`: the tasks it passed over (`ahead` of it in the ready order),
    each counted once more than `before` said; that plan's others are forgotten."""
    counts = {task: before.get(task, 0) + 1 for task in ahead[:PASSED_AT_MOST]}
    kept = [[plan, counts]] + [[name, c] for name, c in _passed(repo) if name != plan]
    try:
        _write_json(repo, PASSED, kept[:PASSED_PLANS])
    except OSError:
        pass  # a hint for the next claim, not a record


# ----- reading a claim ---------------------------------------------------------------------
def claim_event(data: bytes, display: str, plan: str, task: str) -> Event:
    """The one `task.claimed` event a claim commit's message holds; InvalidFile otherwise."""
    head, sep, message = data.partition(b"\n\n")
    lines = [ln for ln in message.split(b"\n") if ln.startswith(b"{")] if sep else []
    if len(lines) != 1:
        raise InvalidFile(f"{display}: a claim commit holds exactly one event line in its message, "
                          f"this one {len(lines)}")
    read = parse_log(lines[0] + b"\n", display, plan, task)
    if read.bad:
        raise InvalidFile(f"{display}: {read.bad[0].problem}")
    if len(read.events) != 1 or read.events[0].type != "task.claimed":
        raise InvalidFile(f"{display}: the event of a claim commit is a task.claimed, this one "
                          f"{read.events[0].type if read.events else 'nothing'}")
    return read.events[0]


def held_line(remote: str, short: str, plan: str, task: str, problem: str) -> str:
    """The one line that says a bad claim ref holds its task, and how to remove it (the name
    quoted as a shell reads it: git allows `;`, `$` and backquotes in a ref name)."""
    import shlex

    return (f"{remote}/{short}: {problem}: {plan}/{task} cannot be claimed until it is removed (a claim "
            f"ref holds one commit written by `flowgit claim --sync`): remove it with "
            f"`git push {shlex.quote(remote)} --delete {shlex.quote(short)}`")


def unknown_line(remote: str, short: str, plan: str, task: str, what: str) -> str:
    """The one line that says a claim ref names a task this clone's plan does not have."""
    import shlex

    return (f"{remote}/{short}: a claim of {plan}/{task}, {what}: nothing of it is folded until this "
            f"clone has the task (one added on another clone comes with its plan: pull, or sync); "
            f"if no one added it, remove the ref with `git push {shlex.quote(remote)} --delete "
            f"{shlex.quote(short)}`")


class Fresh:
    """The claims of the fetched claim refs this clone has not folded yet, read and checked,
    the tasks bad refs hold, and the refs of tasks this clone's plans do not have."""

    def __init__(self, record: dict[str, list[Any]], gone: list[str]) -> None:
        self.record = record
        self.gone = gone
        self.claims: dict[tuple[str, str], list[tuple[str, str, Event]]] = {}  # (plan, task) -> (ref, commit, event)
        self.held: dict[tuple[str, str], str] = {}  # (plan, task) -> the line that says why
        self.bad: dict[str, list[Any]] = {}  # tracking ref -> [commit, None, the line]: not read again
        self.unknown: dict[str, str] = {}  # tracking ref -> its line: a task no plan here has
        self.new_unknown: dict[str, tuple[str, str]] = {}  # ref -> (commit, line) not said before


class _Known:
    """Whether this clone's plan (as execution reads it: the recorded one, or the default
    branch's) has a task; each plan loaded once. Refs can name a thousand plans that are not
    here: the plans this clone has are listed (`plan_ids`: the work tree's and the recorded
    ones, no git process), and only a plan not among them is looked for on the default
    branch, in one `ls-tree` of its tip a read when execution follows it, before `load_plan`."""

    def __init__(self, repo: FlowRepo) -> None:
        self.repo = repo
        self.plans: dict[str, tuple[frozenset[str], str]] = {}
        self.here: set[str] | None = None
        self.default: set[str] | None = None  # None: not listed yet; listed empty when none

    def missing(self, plan: str, task: str) -> str | None:
        """None when `plan` has `task`; else what is missing, in words."""
        if plan not in self.plans:
            from flowgit.errors import FlowError, NotFound

            try:
                if not self._has(plan):
                    raise NotFound(plan)
                loaded = self.repo.load_plan(plan).plan
                self.plans[plan] = (frozenset(t.id for t in loaded.tasks), f"a task plan {plan} does not have here")
            except NotFound:
                self.plans[plan] = (frozenset(), "of a plan this clone does not have")
            except FlowError:
                self.plans[plan] = (frozenset(), f"of plan {plan}, which does not read here")
        tasks, what = self.plans[plan]
        return None if task in tasks else what

    def _has(self, plan: str) -> bool:
        """Whether `load_plan` can find `plan` (store/planpin.source)."""
        if self.here is None:
            self.here = set(self.repo.plan_ids())
        if plan in self.here:
            return True
        if self.default is None:
            from flowgit.store import planpin

            self.default = set()
            if planpin.follows_branch(self.repo):
                branch = planpin.default_branch(self.repo)
                tip = planpin.branch_tip(self.repo, branch) if branch else None
                if tip is not None and git.is_full_id(tip):
                    for path in git_state.list_blobs(self.repo.root, tip, ".flow/plans/"):
                        parts = path.split("/")
                        if len(parts) == 4 and parts[3] == "plan.yaml":
                            self.default.add(parts[2])
        return plan in self.default


def read_fresh(repo: FlowRepo, remote: str, plan: str | None) -> Fresh:
    """Read and check the claim refs of `plan` (every plan's: None) that moved since they were
    last folded. A ref that names no task is never read; one that holds no claim holds its
    task (`held`, one line each, also kept on the store as `held_claims`), and is read again
    only when it moves; the others are folded. One whose task this clone's plan does not have
    is not read (`unknown`): a teammate can push claims of a thousand made-up tasks, which
    every clone would fold into its state and push on; it is read once the plan has the task
    (added on another clone, whose plan this clone learns after the claim). Read after the
    state's merge: an amendment fetched with the claim counts. Every plan's read (`sync`)
    names those first seen (`new_unknown`), which `sync` says once (`note_said`)."""
    store = _store(repo)
    prefix = tracking_prefix(store, remote, plan)
    refs = git_state.ref_values(repo.root, prefix)
    record = load_record(repo)
    found = Fresh(record, [ref for ref in record if ref.startswith(prefix) and ref not in refs])
    pending: dict[str, tuple[str, str, str]] = {}  # tracking ref -> (commit, plan, task)
    base = tracking_prefix(store, remote)
    known = _Known(repo)
    for ref, (oid, kind) in refs.items():
        parts = ref[len(base):].split("/")
        if not all(is_valid_id(p) for p in parts[:2]):
            continue  # no claim flowgit writes: never read, never pushed
        short = namespace(store) + "/".join(parts)
        if len(parts) > 2:  # git refuses `P/T` beside `P/T/...`: every claim of P/T would fail
            found.held[(parts[0], parts[1])] = held_line(
                remote, short, parts[0], parts[1], f"a ref below the claim ref of {parts[0]}/{parts[1]}, "
                "beside which git refuses to create it")
            continue
        if len(parts) != 2:
            continue
        seen = record.get(ref)
        said = seen is not None and seen[0] == oid and seen[1] is None and seen[2] is None
        if seen is not None and seen[0] == oid and not said:
            if seen[1] is None and isinstance(seen[2], str):  # a bad ref read before, unchanged
                found.held[(parts[0], parts[1])] = seen[2]
            continue
        what = known.missing(parts[0], parts[1])
        if what is not None:
            found.unknown[ref] = unknown_line(remote, short, parts[0], parts[1], what)
            if not said and plan is None:  # `sync` says it, then `note_said` remembers it
                found.new_unknown[ref] = (oid, found.unknown[ref])
            continue
        if kind != "commit":
            _hold(found, ref, oid, held_line(remote, short, parts[0], parts[1], f"a {kind}, not a claim commit"))
            continue
        pending[ref] = (oid, parts[0], parts[1])
    objects = git_state.read_objects(repo.root, [c for c, _, _ in pending.values()], MAX_CLAIM_COMMIT)
    for ref, (oid, p, t) in pending.items():
        short = f"{namespace(store)}{p}/{t}"
        kind, data = objects.get(oid, ("missing", None))
        if data is None:
            _hold(found, ref, oid, held_line(remote, short, p, t, "a commit above the "
                  f"{MAX_CLAIM_COMMIT} byte limit of a claim" if kind == "commit" else "not readable"))
            continue
        try:
            ev = claim_event(data, f"{remote}/{short}", p, t)
        except InvalidFile as exc:
            _hold(found, ref, oid, held_line(remote, short, p, t, exc.message.removeprefix(f"{remote}/{short}: ")))
            continue
        found.claims.setdefault((p, t), []).append((ref, oid, ev))
    store.held_claims = dict(found.held)
    store.unknown_claims.update(found.new_unknown)
    return found


def _hold(found: Fresh, ref: str, oid: str, line: str) -> None:
    p, t = ref.split("/")[-2:]
    found.held[(p, t)] = line
    found.bad[ref] = [oid, None, line]


def held(repo: FlowRepo, remote: str) -> tuple[list[str], list[str]]:
    """`doctor`: the lines of every claim ref this clone fetched last that holds its task, and
    of those whose task no plan here has (read from the remote-tracking refs, no fetch)."""
    store = repo.state_store
    if store is None:
        return [], []
    found = read_fresh(repo, remote, None)
    return sorted(set(found.held.values())), sorted(found.unknown.values())


def note_said(repo: FlowRepo, said: dict[str, tuple[str, str]]) -> None:
    """Remember the refs of tasks no plan here has that `sync` just said (tracking ref ->
    (commit, line)), so that it says each once: read again only when the ref moves, or once
    the plan has the task. After the output, so a sync that failed says them next time."""
    if not said:
        return
    from flowgit.errors import FlowError

    try:
        with repo.lock():  # the record's other writers (a claim, a fold) hold it too
            record = load_record(repo)
            for ref, (oid, _) in said.items():
                seen = record.get(ref)
                if seen is None or seen[0] != oid:
                    record[ref] = [oid, None, None]
            save_record(repo, record)
    except (OSError, FlowError):
        pass  # it is said again by the next sync


def fold_changes(repo: FlowRepo, fresh: Fresh) -> dict[tuple[str, str], bytes]:
    """(plan, task) -> the log with the claims `read_fresh` found added by event id, for each log
    they change (read at the state branch's tip)."""
    store = _store(repo)
    changes: dict[tuple[str, str], bytes] = {}
    if not fresh.claims:
        return changes
    listings = {p: store.blobs(p) for p, _ in fresh.claims}
    logs = store.read_many([listings[p][t] for p, t in fresh.claims if t in listings[p]])
    for (p, t), found in fresh.claims.items():
        old = logs.get(listings[p].get(t, ""), b"")
        have = set(event_ids(old)) if old else set()
        lines = [ev.to_line().encode("utf-8") for _, _, ev in found if ev.id not in have]
        if lines:
            changes[(p, t)] = union_logs([old, b"".join(lines)])[0]
    return changes


def claimers(fresh: Fresh) -> set[str]:
    """The workers who claimed what `fresh` brought."""
    return {ev.actor for found in fresh.claims.values() for _, _, ev in found}


def fold(repo: FlowRepo, remote: str, fresh: Fresh) -> int:
    """Fold the claims `read_fresh` found into the local state branch, in one state commit
    (under the lock), by event id. The number of logs it changed."""
    store = _store(repo)
    changes = fold_changes(repo, fresh)
    if changes:
        seen_others(repo, claimers(fresh))
        names = ", ".join(sorted(f"{p}/{t}" for p, t in fresh.claims))
        store.commit({log_path(p, t): c for (p, t), c in changes.items()},
                     f"flow: claims from {remote} ({names})\n\nFlow-Event: sync\n")
        repo.forget_all()
    note_folded(repo, fresh)
    return len(changes)


def note_folded(repo: FlowRepo, fresh: Fresh, claims: bool = True) -> None:
    """Remember what `fresh` read: the bad refs and the refs gone, and (`claims`) its claims as
    folded, once the state commit that holds them is kept."""
    if not ((claims and fresh.claims) or fresh.gone or fresh.bad):
        return
    record = load_record(repo)  # as it is now: a claim this process won since is in it
    if claims:
        for found in fresh.claims.values():
            for ref, oid, ev in found:
                record[ref] = [oid, ev.id, ev.at]
    record.update(fresh.bad)
    save_record(repo, {k: v for k, v in record.items() if k not in fresh.gone})


# ----- winning a claim ---------------------------------------------------------------------
def push_claim(repo: FlowRepo, remote: str, plan: str, task: str, event: Event, sha: str,
               with_state: bool) -> bool:
    """Push the claim of `plan/task` (the state commit `sha` holds `event`): a claim commit on
    the task's claim ref, expecting the value this clone fetched. In the same push the state
    branch goes too: `with_state` (the claim also moves the plan, or the remote has no state
    yet): `sha` itself, atomically with the claim ref; else the state below `sha` (what this
    clone had before it claimed), on its own, whose rejection only waits for the next sync.
    Whether the claim was won."""
    store = _store(repo)
    root = repo.root
    ref = remote_ref(store, plan, task)
    tracking = tracking_prefix(store, remote, plan) + task
    expect = git.read_ref(repo.dirs, tracking)
    if store.last_commit != sha or store.last_tree is None:  # not this process's last write
        store.last_tree = git_state.tree_of(root, sha)
        store.last_parent = git_state.first_parent(root, sha)
    tree = store.last_tree
    assert tree is not None, "push_claim follows this process's state commit"
    message = (f"flow({plan}/{task}): claimed by {event.actor}\n\n{event.to_line()}\n"
               f"Flow-Plan: {plan}\nFlow-Task: {task}\nFlow-Event: claimed\n")
    claim = git_state.commit_tree(root, tree, [expect] if expect else [], message)
    state_ref = f"refs/heads/{store.branch}"
    state = sha if with_state else store.last_parent
    theirs = git.read_ref(repo.dirs, f"refs/remotes/{remote}/{store.branch}")
    updates: list[tuple[str | None, str]] = [(claim, ref)]
    if state is not None and state != theirs:
        updates.append((state, state_ref))
    leases: dict[str, str | None] = {ref: expect}
    if not with_state and random.random() < PRUNE_CHANCE:  # now and then: what `sync` prunes
        from flowgit.clock import wall_now

        for gone, commit in prunable(repo, remote, theirs, wall_now()):
            if gone != ref:
                updates.append((None, gone))
                leases[gone] = commit
    said = git_state.push_refs(root, remote, updates, leases, atomic=with_state)[ref]
    beside = _beside(said, store)
    if beside is not None:  # e.g. `P/T/x`: no claim of P/T can win until it is gone
        raise InvalidFile(held_line(remote, beside, plan, task, "a ref beside which git refuses to create "
                                    f"the claim ref of {plan}/{task}"))
    if said:
        # the remote's own compare-and-swap (the ref moved between its advertisement and the
        # update, or another push held its lock) is a lost race too; a hook's refusal is not
        raced = any(m in said for m in ("failed to update ref", "cannot lock ref", "failed to lock"))
        if "declined" in said or ("remote rejected" in said and not raced):
            raise PushFailed(f"git push {remote} {ref} failed: {said}")
        return False
    record = load_record(repo)
    record[tracking] = [claim, event.id, event.at]
    save_record(repo, record)
    return True


def _beside(said: str, store: StateStore) -> str | None:
    """The branch (under the claim refs) that the remote said stops it from creating the claim
    ref beside it ("cannot lock ref 'X': 'Y' exists; cannot create 'X'"); None otherwise."""
    import re

    found = re.search(r"'refs/heads/([^' ]+)' exists; cannot create", said)
    name = found.group(1) if found else None
    if (name is None or not (name + "/").startswith(namespace(store))
            or not re.fullmatch(r"[A-Za-z0-9._/-]+", name)):
        return None
    return name


# ----- pruning -----------------------------------------------------------------------------
def prunable(repo: FlowRepo, remote: str, theirs: str | None, now: float) -> list[tuple[str, str]]:
    """(remote ref, its commit) of the claim refs this clone folded whose claim the remote's
    state branch held when this clone fetched it (`theirs`: the fetched tip, never what this
    clone pushed since), and whose claim is older than `PRUNE_AFTER`: the state branch
    carries them; the ref only costs every fetch a line."""
    from flowgit.core.events import event_time

    store = _store(repo)
    if theirs is None:
        return []
    prefix = tracking_prefix(store, remote)
    current = git_state.ref_values(repo.root, prefix)
    old: dict[str, dict[str, tuple[str, str]]] = {}  # plan -> task -> (commit, event id)
    for ref, (commit, ident, at) in load_record(repo).items():
        parts = ref[len(prefix):].split("/") if ref.startswith(prefix) else []
        if (len(parts) != 2 or current.get(ref, ("",))[0] != commit or not isinstance(at, str)
                or ident is None or now - event_time(at) < PRUNE_AFTER):
            continue
        old.setdefault(parts[0], {})[parts[1]] = (commit, str(ident))
    out: list[tuple[str, str]] = []
    for plan, tasks in sorted(old.items()):
        listing = store.blobs(plan, theirs)
        logs = store.read_many([listing[t] for t in tasks if t in listing])
        for task, (commit, ident) in sorted(tasks.items()):
            if ident in set(event_ids(logs.get(listing.get(task, ""), b""))):
                out.append((remote_ref(store, plan, task), commit))
    return out[:PRUNE_AT_ONCE]


def prune(repo: FlowRepo, remote: str, theirs: str | None, now: float) -> int:
    """Delete the `prunable` claim refs on the remote, each only while it still holds the
    claim this clone folded (a lease): one push. How many went."""
    gone = prunable(repo, remote, theirs, now)
    if not gone:
        return 0
    said = git_state.push_refs(repo.root, remote, [(None, ref) for ref, _ in gone], dict(gone))
    return sum(1 for ref, _ in gone if said.get(ref) == "")
