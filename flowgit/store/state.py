"""The state branch (config `version: 2`, ADR 0011): every event log lives on one branch of its
own, `flow/state`, shared by every work tree of the repository and carried by clone and fetch.

Its tree keeps the design card's layout with a fan-out, so that one write adds a few small
trees however many logs there are:

    .flow/plans/<plan>/events/_plan.jsonl
    .flow/plans/<plan>/events/<2 hex of sha1(task)>/<task>.jsonl

Reads list a plan's logs once per state commit (cached, and brought up to date with
`diff-tree` when the branch moved) and read blobs by id; writes are plumbing under the
repository lock, with `update-ref NEW OLD` as the compare-and-swap."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from flowgit import git, git_state
from flowgit.core.events import MAX_INT, PLAN_LOG, Event, parse_log
from flowgit.core.storage import DEFAULT_BRANCH
from flowgit.errors import FlowError, InvalidFile
from flowgit.ids import is_valid_id

try:  # CPython's own SHA-1: importing hashlib loads OpenSSL, ~2 ms of every process (ADR 0007)
    from _sha1 import sha1 as _sha1  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # pragma: no cover - an interpreter without it
    from hashlib import sha1 as _sha1

if TYPE_CHECKING:
    from flowgit.store.repo import FlowRepo

EVENTS = "events"
INDEX = "state.index"
KEPT_BLOBS = 64  # blobs kept in memory from one read (StateStore.keep)
WRITTEN, WRITTEN_MAX, WRITTEN_BYTES = "state@written", 16, 32 * 1024  # StateStore._remember


def bucket(stream: str) -> str:
    return str(_sha1(stream.encode("utf-8")).hexdigest())[:2]


def log_path(plan: str, stream: str) -> str:
    base = f".flow/plans/{plan}/{EVENTS}"
    return f"{base}/{PLAN_LOG}.jsonl" if stream == PLAN_LOG else f"{base}/{bucket(stream)}/{stream}.jsonl"


def stream_of(plan: str, path: str) -> str | None:
    """The stream a path of the state tree holds (None: not a log of `plan` in its place)."""
    base = f".flow/plans/{plan}/{EVENTS}/"
    if not path.startswith(base) or not path.endswith(".jsonl"):
        return None
    rest = path[len(base):-6].split("/")
    if rest == [PLAN_LOG]:
        return PLAN_LOG
    if len(rest) == 2 and is_valid_id(rest[1]) and rest[0] == bucket(rest[1]):
        return rest[1]
    return None


class StateStore:
    def __init__(self, repo: FlowRepo, branch: str) -> None:
        self.repo = repo
        self.branch = branch
        self.ref = f"refs/heads/{branch}"
        self._listings: dict[tuple[str, str], dict[str, str]] = {}
        self._blobs: dict[str, bytes] = {}
        self._own = False
        self.last_tree: str | None = None  # the tree of the last commit this process wrote
        self.last_parent: str | None = None  # and its first parent
        self.last_commit: str | None = None  # and the commit
        # (plan, task) -> the line of a fetched claim ref that holds the task (ops/claimrefs)
        self.held_claims: dict[tuple[str, str], str] = {}
        # fetched claim refs of tasks no plan here has, not said yet: ref -> (commit, line)
        self.unknown_claims: dict[str, tuple[str, str]] = {}

    def refuse_code_branch(self) -> None:
        """The state branch's tree holds event logs only, never the config a code branch of a
        flowgit repository always has: a `state.branch` that names a code branch (a pulled
        config saying `main`, say) is refused before flowgit moves that branch under someone's
        work tree or pushes it."""
        if self._own or self.branch == DEFAULT_BRANCH:  # no config chose it: no git process
            return
        tip = self.head()
        if (tip and git.show_blob(self.repo.root, tip, ".flow/config.yaml") is not None
                and not _state_shaped(self.repo.root, tip)):
            raise InvalidFile(f".flow/config.yaml: state.branch: {self.branch!r} is a code branch (it "
                              "holds .flow/config.yaml), not flowgit's state: name a branch of its "
                              "own (the default is flow/state)")
        self._own = True

    # ----- reading ---------------------------------------------------------------------------
    def head(self) -> str | None:
        """The state's tip: the local branch, or in a fresh clone (which has only the remote's
        copy) the remote-tracking one, which the first write then builds on."""
        return self.local_head() or git.read_ref(self.repo.dirs, self.tracking())

    def local_head(self) -> str | None:
        return git.read_ref(self.repo.dirs, self.ref)

    def tracking(self) -> str:
        return f"refs/remotes/{self.repo.work_config.remote}/{self.branch}"

    def check_writable(self) -> None:
        """Refuse to move a branch some work tree has checked out (`state.branch: main`, or
        `git checkout flow/state`): plumbing would move it under that work tree's files and
        index, and the next commit there would undo the state or the code."""
        where = git_state.checked_out_in(self.repo.dirs, self.ref)
        if where is not None:
            raise FlowError(f"the state branch {self.branch} is checked out in {where}: flowgit keeps "
                            f"it out of every work tree; check out another branch there, or set "
                            f"state.branch in .flow/config.yaml to a branch of its own (default flow/state)")

    def display(self, plan: str, stream: str) -> str:
        return f"{self.branch}:{log_path(plan, stream)}"

    def blobs(self, plan: str, commit: str | None = None) -> dict[str, str]:
        """stream -> blob id of each of the plan's logs at `commit` (default: the branch tip)."""
        commit = commit or self.head()
        if commit is None:
            return {}
        key = (plan, commit)
        if key in self._listings:
            return self._listings[key]
        name = f"{plan}@tree"
        entry = self.repo.cache.entry(name)
        prefix = f".flow/plans/{plan}/{EVENTS}/"
        listing: dict[str, str] | None = None
        cached = entry.get("commit") == commit  # then nothing to write back: no rewrite a command
        if cached:
            listing = dict(entry.get("blobs") or {})
        elif isinstance(entry.get("commit"), str) and isinstance(entry.get("blobs"), dict):
            try:
                changes = git_state.changed_blobs(self.repo.root, entry["commit"], commit, prefix)
            except FlowError:
                changes = None
            if changes is not None:
                listing = dict(entry["blobs"])
                for change in changes:
                    stream = stream_of(plan, change.path)
                    if stream is None:
                        continue
                    if change.blob is None:
                        listing.pop(stream, None)
                    else:
                        listing[stream] = change.blob
        if listing is None:
            listing = {}
            for path, blob in git_state.list_blobs(self.repo.root, commit, prefix).items():
                stream = stream_of(plan, path)
                if stream is not None:
                    listing[stream] = blob
        if not cached:
            entry.update({"commit": commit, "blobs": listing})
            self.repo.cache.changed(name)
        self._listings[key] = listing
        return listing

    def read(self, plan: str, stream: str, commit: str | None = None) -> bytes | None:
        if stream == PLAN_LOG and commit is None:
            # every command reads the plan log: at the commit it was last read at, the kept
            # copy is it, and the plan's listing (a line per task log) need not be loaded
            commit = self.head()
            kept = self.repo.cache.entry(f"{plan}@planlog")
            if commit is not None and kept.get("commit") == commit and isinstance(kept.get("data"), bytes):
                return kept["data"]  # type: ignore[no-any-return]
        blob = self.blobs(plan, commit).get(stream)
        if blob is None:
            return None
        if stream != PLAN_LOG:  # a blob never changes: one read a process (decide, then append)
            if blob not in self._blobs:
                self._blobs[blob] = self._read_blobs([blob]).get(blob, b"")
            return self._blobs[blob]
        # every command reads the plan log: kept by blob id, so a warm read starts no git
        name = f"{plan}@planlog"
        entry = self.repo.cache.entry(name)
        if entry.get("blob") != blob or not isinstance(entry.get("data"), bytes):
            data = self._read_blobs([blob]).get(blob, b"")
            entry.update({"blob": blob, "data": data})
            self.repo.cache.changed(name)
        if entry.get("commit") != commit:
            entry["commit"] = commit
            self.repo.cache.changed(name)
        return entry["data"]  # type: ignore[no-any-return]

    def read_many(self, blobs: Sequence[str]) -> dict[str, bytes]:
        return self._read_blobs(blobs)

    def keep(self, contents: Mapping[str, bytes]) -> None:
        """Blobs this process read already, under the same size limit (a merge reads the logs
        it brings; the decision and the evaluation that follow read them again): a blob never
        changes. A few only: a whole plan's read is not held past its use."""
        if len(contents) <= KEPT_BLOBS:
            self._blobs.update(contents)

    def _read_blobs(self, blobs: Sequence[str]) -> dict[str, bytes]:
        """A log above the size limit (a sync can bring anything) is refused by its path before
        it is read."""
        known = {b: self._blobs[b] for b in blobs if b in self._blobs}
        if len(known) < len(blobs):
            written = self.repo.cache.entry(WRITTEN).get("blobs")
            if isinstance(written, dict):
                known.update((b, written[b]) for b in blobs if isinstance(written.get(b), bytes))
        if len(known) == len(blobs):
            return known
        found = self._read_blobs_git([b for b in blobs if b not in known])
        self.keep(found)
        return found | known

    def remember_own(self, commit: str) -> None:
        """A state commit this clone wrote with `write-tree` outside `commit` (a merge)."""
        self._remember({}, commit)

    def own_commits(self) -> frozenset[str]:
        """The last state commits this clone wrote with `write-tree` (from an index, which holds
        a path once): a merge need not look their trees over for a path listed twice."""
        commits = self.repo.cache.entry(WRITTEN).get("commits")
        return frozenset(c for c in commits if isinstance(c, str)) if isinstance(commits, list) else frozenset()

    def _remember(self, contents: Mapping[str, bytes], commit: str | None = None) -> None:
        """The small logs this clone just wrote, kept in its cache by blob id: the next command
        (the `done` after a claim) reads its task's log without a `cat-file`; and the commit
        (`own_commits`)."""
        entry = self.repo.cache.entry(WRITTEN)
        if commit is not None:
            commits = [c for c in entry.get("commits") or [] if isinstance(c, str) and c != commit]
            entry["commits"] = (commits + [commit])[-WRITTEN_MAX:]
        kept = dict(entry["blobs"]) if isinstance(entry.get("blobs"), dict) else {}
        for blob, data in contents.items():
            if len(data) <= WRITTEN_BYTES:
                kept.pop(blob, None)
                kept[blob] = data
        while len(kept) > WRITTEN_MAX:  # the oldest first
            del kept[next(iter(kept))]
        entry["blobs"] = kept
        self.repo.cache.changed(WRITTEN)

    def _read_blobs_git(self, blobs: Sequence[str]) -> dict[str, bytes]:
        from flowgit.core.storage import MAX_LOG_BYTES

        def name(blob: str) -> str:
            for (plan, _), listing in self._listings.items():
                for stream, known in listing.items():
                    if known == blob:
                        return self.display(plan, stream)
            return f"{self.branch}: blob {blob}"

        return git_state.read_blobs(self.repo.root, blobs, MAX_LOG_BYTES, name)

    def plan_ids(self) -> list[str]:
        """Plans that have logs on the state branch (a plan removed from a branch keeps them)."""
        head = self.head()
        if head is None:
            return []
        return sorted(p.split("/")[2] for p in git_state.list_dirs(self.repo.root, head, ".flow/plans/")
                      if is_valid_id(p.split("/")[2]))

    # ----- writing (under the repository lock) -------------------------------------------------
    def commit(self, changes: Mapping[str, bytes | None], message: str,
               extra_parents: Sequence[str] = (), signed: bool = False) -> str:
        """One state commit: `changes` (tree path -> new content, None to remove) on top of the
        branch tip, the ref moved only if nobody moved it meanwhile. Its id. `signed`: the
        caller knows the policy asks for signed commits where `config` cannot say it."""
        self.refuse_code_branch()
        self.check_writable()
        root = self.repo.root
        local = self.local_head()
        old = local or git.read_ref(self.repo.dirs, self.tracking())
        paths = list(changes)
        contents = [c for c in changes.values() if c is not None]
        folder = git_state.state_dir(self.repo.dirs)
        ids = iter(git_state.write_blobs(root, contents, folder))
        blobs = {p: (None if changes[p] is None else next(ids)) for p in paths}
        index = folder / INDEX
        marker = folder / (INDEX + ".base")
        based = index.exists() and _read(marker) == (old or "")
        marker.unlink(missing_ok=True)  # the index is ahead of any commit until the ref moved
        # only flowgit uses this index, under the repository lock we hold: a lock file of it is
        # what a writer killed mid-`update-index` left (without the marker, it is rebuilt)
        (folder / (INDEX + ".lock")).unlink(missing_ok=True)
        tree = git_state.write_tree(root, index, old, blobs, based)
        parents = ([old] if old else []) + list(extra_parents)
        new = git_state.commit_tree(root, tree, parents, message, self._sign(signed))
        self.last_tree, self.last_parent, self.last_commit = tree, old, new
        git_state.advance_ref(root, self.ref, new, local, message.splitlines()[0] if message else "flowgit")
        marker.write_text(new)
        self.advanced(old, new, blobs)
        self._remember({b: changes[p] or b"" for p, b in blobs.items() if b is not None and p.endswith(".jsonl")},
                       new)
        if new.startswith("0"):  # about one write in 16: packing is due only every few thousand objects
            git_state.maintain(root)
        return new

    def _sign(self, signed: bool = False) -> bool:
        """Sign the state commit as format 1's `git commit` did, when approvals count only in
        signed commits (approvals.signed) and git is set to sign (commit.gpgSign): otherwise no
        approval made in format 2 could ever count. One `git config` read, only then."""
        try:
            if not (signed or self.repo.config.approvals_signed):
                return False
        except FlowError:
            return False
        return (git.config_get(self.repo.root, "commit.gpgsign") or "").lower() in ("true", "yes", "on", "1")

    def advanced(self, old: str | None, new: str, blobs: Mapping[str, str | None], plans: Iterable[str] = ()) -> None:
        """This clone moved the branch from `old` to `new`, a commit whose tree is `old`'s with
        `blobs` (path -> blob id, None: removed): a write, or a merge or fast-forward whose
        changes it read. The cached listings (of the plans `blobs` touches and of `plans`),
        evaluations and recorded plan and config follow, so the next read needs no `diff-tree`
        to learn them (nor checks them again)."""
        self._advance_listings(old, new, blobs, plans)
        from flowgit.store import configpin, planpin

        planpin.advance(self.repo, old, new, blobs)
        configpin.advance(self.repo, old, new, blobs)

    def _advance_listings(self, old: str | None, new: str, blobs: Mapping[str, str | None],
                          plans: Iterable[str] = ()) -> None:
        """Bring the cached listings of the plans this write touched (and of `plans`, which it
        left as they were) from `old` to `new`, so the next command needs no `diff-tree` to
        learn what it wrote itself."""
        touched: dict[str, dict[str, str | None]] = {plan: {} for plan in plans}
        for path, blob in blobs.items():
            parts = path.split("/")
            if len(parts) >= 5 and parts[:2] == [".flow", "plans"]:
                stream = stream_of(parts[2], path)
                if stream is not None:
                    touched.setdefault(parts[2], {})[stream] = blob
        from flowgit.store import evalcache  # the next read folds only the logs written here

        evalcache.advance(self.repo, old, new, {plan: {k: v for k, v in changes.items() if k != PLAN_LOG}
                                                for plan, changes in touched.items()})
        for plan, changes in touched.items():
            name = f"{plan}@tree"
            entry = self.repo.cache.entry(name)
            if old is None or entry.get("commit") != old or not isinstance(entry.get("blobs"), dict):
                continue
            listing = dict(entry["blobs"])
            for stream, blob in changes.items():
                if blob is None:
                    listing.pop(stream, None)
                else:
                    listing[stream] = blob
            entry.update({"commit": new, "blobs": listing})
            self.repo.cache.changed(name)
            self._listings[(plan, new)] = listing

    def note_moved(self) -> None:
        """Another writer (a fetch) moved the branch: the private index no longer matches it."""
        (git_state.state_dir(self.repo.dirs) / (INDEX + ".base")).unlink(missing_ok=True)
        self._listings.clear()


def appended(base: bytes | None, events: Iterable[Event], display: str, plan: str, stream: str) -> bytes:
    """A log's new content: what it held and these lines, each checked as `validate` would
    (the writer is the check now: no hook sees a plumbing write)."""
    text = b"".join(e.to_line().encode("utf-8") for e in events)
    read = parse_log(text, display, plan, None if stream == PLAN_LOG else stream, MAX_INT)
    if read.bad:
        raise InvalidFile(f"{display}: flowgit would write an unreadable event ({read.bad[0].problem}): "
                          "nothing was written; report this as a bug")
    old = base or b""
    if old and not old.endswith(b"\n"):
        old += b"\n"
    return old + text


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None



def _state_shaped(root: Path, tip: str) -> bool:
    """A state tree holds `.flow/plans/` and the config recorded with an approved plan, nothing
    else; a code branch of a flowgit repository has more (what `flowgit init` commits beside)."""
    return (git_state.names_under(root, tip) == [".flow"]
            and set(git_state.names_under(root, tip, ".flow/")) <= {".flow/config.yaml", ".flow/plans"})
