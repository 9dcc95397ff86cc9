"""Many machines through one remote: fetch, merge (event logs by the merge driver), push.

The remote is the lock: a claim counts only once its commit is pushed. A rejected push means
someone moved first; the claim commit is taken back, the remote merged, and the decision made
again on the merged state.
"""
from __future__ import annotations

import os
import random
import re
import shlex
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from flowgit import git, git_state, turns
from flowgit.ids import check_remote
from flowgit.errors import (
    Detached,
    FetchFailed,
    FlowError,
    FormatMismatch,
    GitError,
    MergeConflict,
    NoRemote,
    PushFailed,
    RaceLost,
)
from flowgit.core.events import Event
from flowgit.crashpoints import armed, crash_point
from flowgit.store.journal import Journal
from flowgit.store.repo import FlowRepo

T = TypeVar("T")
RETRIES = 16  # 8 left 1-4 of 60 claims at exit 4 with 8 clones on one remote (bench_state, c)
MIN_SLOT = 0.02   # seconds
MAX_SLEEP = 3.0   # seconds, one backoff at most

# How long one fetch..push round took in this process (the "slot" backoff is measured in):
# a rejected push means another machine pushed inside that window, so waiting a random number
# of such windows spreads the contenders out whatever the speed of the machine and remote.
_round_started: float | None = None
_last_round: float | None = None
# A push that failed for good (no such remote, access denied, a hook that declines): `push`
# reports it as not pushed, so the caller takes its transition commit back as after any
# rejection, and the `backoff` that follows raises it instead of retrying.
_push_error: FlowError | None = None

RACE_MARKERS = ("fetch first", "non-fast-forward", "failed to update ref", "cannot lock ref",
                "stale info", "incorrect old value")


# A fetch that fails like this will fail again: no point retrying (exit 1, not 4).
FETCH_FOR_GOOD = ("does not appear to be a git repository", "not found", "not allowed",
                  "authentication failed", "permission denied", "could not read username",
                  "no such file or directory", "is not a git command", "unable to find remote helper",
                  "invalid gitfile format", "not a git repository")  # a plain file; a .git file pointing nowhere


def _git_error_line(err: str, fallback: object) -> str:
    """The line of git's stderr that says what went wrong (git often ends with advice), with
    what the remote itself said (a declining hook's reason) in front."""
    lines = [line.strip() for line in err.strip().splitlines() if line.strip()]
    remote = [ln[len("remote:"):].strip() for ln in lines if ln.startswith("remote:")]
    said = "; ".join(r for r in remote if r)
    for prefix in ("fatal:", "error:", "git: ", "!"):
        for line in lines:
            if line.startswith(prefix) and not line.startswith("error: failed to push"):
                return f"{said}: {line}" if said else line
    main = lines[-1] if lines else str(fallback)
    return f"{said}: {main}" if said else main


def target(repo: FlowRepo, remote: str | None, verify: bool = True) -> tuple[str, str]:
    """The remote and branch a sync goes to. `verify=False` (a synced transition, whose first
    step is a fetch) leaves the check that the remote exists to a failed fetch (`_network`):
    one git process less a claim."""
    name = check_remote(remote, "--remote") if remote is not None else repo.config.remote
    store = repo.state_store
    branch = store.branch if store is not None else git.current_branch(repo.root)
    if branch is None:
        raise Detached("HEAD is detached: check out a branch before syncing")
    if verify or _beside(repo.root, name):
        require_remote(repo, name)
    return name, branch


def _beside(root: Path, name: str) -> bool:
    """Whether git could take `name` for a repository in the work tree: a name that is no
    remote is a path to git (`./origin`, `./origin.git`; a bare repository committed as plain
    files, or a bundle), whose fetch and push would succeed there. Two lstats, no process."""
    return any(os.path.lexists(root / f"{name}{suffix}") for suffix in ("", ".git"))


def require_remote(repo: FlowRepo, name: str) -> None:
    if not git.remote_exists(repo.root, name):
        # a valid name may still hold what a shell reads ('$', ';'): quoted for copying
        raise NoRemote(f"no remote named {name!r}: add it with `git remote add {shlex.quote(name)} URL`, or name "
                       "another with `remote:` in .flow/config.yaml (`sync` also takes --remote)")


def fetch_merge(repo: FlowRepo, remote: str, branch: str, journal: Journal | None = None,
                allow_unrelated: bool = False, claims: str | bool = False,
                defer: list[Any] | None = None) -> str:
    """Bring the remote branch in. Event logs merge by union; any other conflict aborts.
    With the state branch (format 2) only the state is fetched and merged (ops/statesync),
    with the claim refs of plan `claims` (True: of every plan) folded in (or, with `defer`,
    handed over for the caller's own commit to fold)."""
    global _round_started
    _round_started = time.monotonic()
    if repo.state_store is not None:
        from flowgit.ops import statesync

        return _network(repo, lambda: statesync.fetch_merge(repo, remote, allow_unrelated, claims, defer), remote)
    root = repo.root
    proc = git.fetch(root, remote, branch)
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        if "couldn't find remote ref" in err:
            return "no remote branch"
        require_remote(repo, remote)
        message = f"git fetch {remote} failed: {_git_error_line(err, proc.returncode)}"
        if any(marker in err.lower() for marker in FETCH_FOR_GOOD):
            raise FetchFailed(message + f" (check `git remote get-url {shlex.quote(remote)}`)")
        raise RaceLost(message)  # the network may come back: retrying may win
    theirs = git.fetched_commit(root)
    if _format_of(git.show_blob(root, theirs, ".flow/config.yaml")) == 2:
        raise FormatMismatch(f"{remote}/{branch} has moved to format 2 (its event logs are on a state "
                             "branch, ADR 0011): take the migration with `git pull`, then run `flowgit sync`")
    ours = git.head(root)
    if ours == theirs or git.is_ancestor(root, theirs, "HEAD"):
        return "up to date"
    if journal is not None:
        journal.begin_sync_merge(theirs)
    if armed("sync-merge"):  # a test's kill in the middle of the merge: merged, not committed
        git.merge_no_commit(root, theirs)
        crash_point("sync-merge")
    merge = git.merge(root, theirs, f"flow: sync with {remote}/{branch}")
    if journal is not None:
        journal.clear()
    if merge.returncode != 0:
        conflicted = git.conflicted_paths(root)
        git.merge_abort(root)
        raise MergeConflict(f"merging {remote}/{branch} conflicts in {', '.join(conflicted) or 'files'}: "
                            "resolve with `git pull` by hand, then `flowgit sync`")
    return "merged"


def _network(repo: FlowRepo, step: Callable[[], T], remote: str) -> T:
    """A state fetch or push: a failure that will fail again is exit 1, others may be won."""
    try:
        return step()
    except GitError as exc:
        require_remote(repo, remote)  # a remote that is not there says so (`target(verify=False)`)
        text = exc.message.lower()
        if any(marker in text for marker in FETCH_FOR_GOOD):
            raise FetchFailed(f"{exc.message} (check `git remote get-url {shlex.quote(remote)}`)") from None
        raise RaceLost(exc.message) from None


def _format_of(config: bytes | None) -> int:
    if config is None:
        return 1
    found = re.search(rb"^version:[ \t]*([0-9]+)", config, re.M)
    return int(found.group(1)) if found else 1


def push(repo: FlowRepo, remote: str, branch: str) -> bool:
    """Push HEAD (or the state branch) to the remote. False when it was not pushed: the caller
    takes its own commit back and calls `backoff`, which waits before the next try after a
    lost race, and raises (exit 1) when the push can never succeed as it is."""
    global _last_round, _push_error
    _push_error = None
    if repo.state_store is not None:
        from flowgit.ops import statesync

        try:
            pushed = statesync.push(repo, remote)
        except GitError as exc:
            _push_error = PushFailed(exc.message)
            return False
        if not pushed and _round_started is not None:
            _last_round = time.monotonic() - _round_started
        _learn(repo, rejected=not pushed)
        return pushed
    root = repo.root
    proc = git.push_head(root, remote, branch)
    if proc.returncode == 0:
        _learn(repo, rejected=False)
        return True
    if _round_started is not None:
        _last_round = time.monotonic() - _round_started
    err = proc.stderr.decode("utf-8", "replace")
    if "hook declined" in err or not any(marker in err for marker in RACE_MARKERS):
        _push_error = PushFailed(f"git push {remote} failed: {_git_error_line(err, proc.returncode)}")
    else:
        _learn(repo, rejected=True)
    return False


def push_claim(repo: FlowRepo, remote: str, plan: str, task: str, event: Event, sha: str,
               with_state: bool) -> bool:
    """Win the claim `sha` holds on its task's claim ref (ops/claimrefs.push_claim). False
    when another clone claimed the task first: the caller takes `sha` back and calls
    `backoff`, which raises instead when the push can never succeed as it is."""
    global _last_round, _push_error
    _push_error = None
    from flowgit.ops import claimrefs

    try:
        won = claimrefs.push_claim(repo, remote, plan, task, event, sha, with_state)
    except PushFailed as exc:
        _push_error = exc
        return False
    except GitError as exc:
        _push_error = PushFailed(exc.message)
        return False
    if not won and _round_started is not None:
        _last_round = time.monotonic() - _round_started
    _learn(repo, rejected=not won)
    return won


def push_error() -> bool:
    """Whether the last push failed for good (`backoff` raises it), not in a lost race."""
    return _push_error is not None


# What one clone learnt about contention, for its next processes (each `claim --sync` is a new
# process that would otherwise start with no backoff and a guessed slot, straight into the
# window of the clones that just lost): the backoff level and the slot last measured.
PACE_FILE = "sync-pace"
PACE_LEVELS = 4
PACE_FORGET = 30.0  # seconds: contention older than this says nothing about now


def _pace_path(repo: FlowRepo) -> Path:
    return git_state.state_dir(repo.dirs) / PACE_FILE


def _recall(repo: FlowRepo) -> tuple[int, float]:
    """(level, slot) this clone's last rounds left; (0, 0) when there is nothing recent."""
    try:
        level, slot, at = _pace_path(repo).read_text().split()
        if abs(time.time() - float(at)) > PACE_FORGET:
            return 0, 0.0
        return max(0, min(int(level), PACE_LEVELS)), max(0.0, min(float(slot), MAX_SLEEP))
    except (OSError, ValueError):
        return 0, 0.0


def _remember(repo: FlowRepo, level: int, slot: float) -> None:
    path = _pace_path(repo)
    tmp = path.with_name(f"{PACE_FILE}.{os.getpid()}")
    try:
        tmp.write_text(f"{level} {slot:.4f} {time.time():.3f}\n")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


SPREAD = 16  # the first ready tasks a contended claim of a plan picks among (ADR 0006)
SPREAD_PER_CLAIMER = 16  # and with claim refs, this many per worker claiming beside it (ADR 0013)


def contended(repo: FlowRepo) -> int:
    """How many of the first ready tasks this clone's next synced claim of a plan spreads its
    choice over: 0 when it neither lost races lately nor (format 2) folded other workers'
    claims lately; else 16 per worker claiming (itself and those whose claims it folded
    last), whichever is more: clones claiming at once pick the same task less often."""
    lost = _recall(repo)[0] > 0
    if repo.state_store is None:
        return SPREAD if lost else 0
    from flowgit.ops import claimrefs

    others = claimrefs.others_lately(repo, PACE_FORGET)
    if not lost and not others:
        return 0
    return max(SPREAD, SPREAD_PER_CLAIMER * (others + 1))


def pace(repo: FlowRepo) -> None:
    """Before a synced transaction's first round (outside the lock): when this clone lost races
    lately, wait a random number of the rounds it measured, as a retry would."""
    global _last_round
    level, slot = _recall(repo)
    if slot > 0 and _last_round is None:
        _last_round = slot
    if level > 0 and slot > 0:
        turns.sleep(min(slot * random.uniform(0, 2 ** level), MAX_SLEEP))


def _learn(repo: FlowRepo, rejected: bool) -> None:
    level, slot = _recall(repo)
    if rejected:
        _remember(repo, min(level + 1, PACE_LEVELS), _last_round or slot or MIN_SLOT)
    elif level > 0:
        _remember(repo, level - 1, slot)


def backoff(attempt: int) -> None:
    """Randomised exponential backoff in slots of one fetch..push round (binary exponential
    backoff, as on a shared wire): after the n-th rejection wait 0..2^(n+1) rounds (at most
    16). A fixed 50 ms base is shorter than a round on a busy machine, so every loser came back
    inside the next winner's window and lost again; measured in rounds, they take turns.

    Raises the error of the last push instead when it was not a lost race."""
    global _push_error
    if _push_error is not None:
        exc, _push_error = _push_error, None
        raise exc
    slot = max(_last_round if _last_round is not None else 0.05, MIN_SLOT)
    turns.sleep(min(slot * random.uniform(0, 2 ** min(attempt + 1, 4)), MAX_SLEEP))


def push_transition(repo: FlowRepo, remote: str, branch: str, sha: str, message: str,
                    still_legal: Callable[[], bool], budget: int) -> tuple[str | None, int, int]:
    """Push our transition commit `sha` (under the lock). With the state branch, a rejected
    push is settled in place while it can be: fetch, and when the remote moved only other
    tasks' logs and `still_legal()` holds on the merged state, the commit is rebased onto the
    fetched tip (ops/statesync.rebase_own) and pushed again after the wait `backoff` makes:
    no take-back, full merge and new decision. At most `budget` pushes.

    (the pushed commit or None, pushes made, rebases). None: nothing of ours is left above
    `sha`; the caller takes `sha` back and decides again after `backoff`."""
    global _round_started
    own, pushes, rebased = sha, 0, 0
    try:
        while True:
            pushes += 1
            if push(repo, remote, branch):
                return own, pushes, rebased
            if repo.state_store is None or _push_error is not None or pushes >= budget:
                break
            _wait(RETRIES - budget + pushes - 1)
            _round_started = time.monotonic()
            from flowgit.ops import statesync

            mine = own
            new = _network(repo, lambda: statesync.rebase_own(repo, remote, mine, message, still_legal), remote)
            if new is None:
                break
            own, rebased = new, rebased + 1
    except BaseException:
        if own != sha:
            take_back(repo, own)
        raise
    if own != sha:
        take_back(repo, own)
    return None, pushes, rebased


def _wait(attempt: int) -> None:
    """Before a rebase after the `attempt`-th rejection: the wait `backoff` would make before a
    new decision (under the lock: only this clone's other commands wait on it, and they would
    lose the same race). Shorter waits made the clones that lost together collide again."""
    slot = max(_last_round if _last_round is not None else 0.05, MIN_SLOT)
    turns.sleep(min(slot * random.uniform(0, 2 ** min(attempt + 1, 4)), MAX_SLEEP))


def sync(repo: FlowRepo, remote: str | None, retries: int = RETRIES,
         allow_unrelated: bool = False) -> dict[str, object]:
    name, branch = target(repo, remote)
    pace(repo)
    for attempt in range(retries):
        round_: dict[str, object] = {}
        with repo.writing(prepare=lambda: round_.update(merge=fetch_merge(repo, name, branch, repo.journal,
                                                                          allow_unrelated, claims=True),
                                                        fetched=_fetched_state(repo, name)),
                          then=lambda _sha: round_.update(pushed=push(repo, name, branch))):
            pass  # nothing of our own to write: merge theirs, push the result
        if round_.get("pushed"):
            store = repo.state_store
            result: dict[str, object] = {"remote": name, "branch": branch, "merge": round_["merge"],
                                         "attempts": attempt + 1,
                                         "head": store.head() if store else git.head(repo.root)}
            if store is not None:  # claim refs the state branch carries now (ADR 0013)
                from flowgit.clock import wall_now
                from flowgit.ops import claimrefs

                fetched = round_.get("fetched")
                result["pruned"] = _network(repo, lambda: claimrefs.prune(
                    repo, name, fetched if isinstance(fetched, str) else None, wall_now()), name)
                # claim refs that hold no claim hold their task, each said in one line
                result["held_claims"] = sorted(set(store.held_claims.values()))
            return result
        backoff(attempt)
    raise RaceLost(f"could not push to {name}/{branch} after {retries} attempts: others keep moving first; retry")


def _fetched_state(repo: FlowRepo, remote: str) -> str | None:
    """The remote's state tip as just fetched (format 2), before this clone pushes over it."""
    store = repo.state_store
    return git.read_ref(repo.dirs, f"refs/remotes/{remote}/{store.branch}") if store is not None else None


def take_back(repo: FlowRepo, sha: str) -> None:
    """Undo our own unpushed transition commit (only .flow/ paths; other work is kept)."""
    if repo.state_store is not None:
        from flowgit.ops import statesync

        statesync.take_back(repo, sha)
        return
    root = repo.root
    if git.head(root) == sha:
        git.undo_last_commit(root)
