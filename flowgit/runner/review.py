"""`run --land branch`: a task's verified work waits on its branch for review in a pull request
(pushed with `sync: push`), recorded as `task.review`; the task is done when its branch reaches
the base branch, which the watcher's passes and every `run` notice (`land_reviewed`)."""
from __future__ import annotations

from flowgit import git
from flowgit.clock import wall_now
from flowgit.core.events import Event, make_event
from flowgit.errors import FlowError
from flowgit.ids import branch_problem
from flowgit.store.repo import FlowRepo
from flowgit.store.writing import Write, commit_message


def review_event(events: tuple[Event, ...]) -> Event | None:
    return next((e for e in reversed(events) if e.type == "task.review"), None)


def landed(repo: FlowRepo, ev: Event) -> bool:
    """The reviewed commit is in the base branch (here, or on the remote as last fetched)."""
    commit, base = ev.data.get("commit"), ev.data.get("base")
    if not git.is_full_id(commit) or branch_problem(base) is not None:
        return False  # the log's checker holds the task on such a line (core/events.py "branch")
    refs = [f"refs/heads/{base}", f"refs/remotes/{repo.config.remote}/{base}"]
    return any(git.read_ref(repo.dirs, ref) is not None and git.is_ancestor(repo.root, str(commit), ref)
               for ref in refs)


def land_reviewed(repo: FlowRepo, actor: str, plan_ids: list[str] | None = None) -> list[str]:
    """Record `done` for each task in review whose branch has reached its base; returns them."""
    out: list[str] = []
    now = wall_now()
    for pid in plan_ids if plan_ids is not None else repo.plan_ids():
        try:
            state = repo.state(pid, now)
        except FlowError:
            continue
        waiting = [v.id for v in state.tasks.values() if v.state == "review"]
        for task_id in waiting:
            ev = review_event(repo.read_log(pid, task_id).events)
            if ev is None or not landed(repo, ev):
                continue

            def decide(w: Write, task_id: str = task_id, ev: Event = ev) -> None:
                view = w.state.tasks.get(task_id)
                if view is None or view.state != "review":
                    return
                data = {k: ev.data[k] for k in ("note", "files_modified", "lines_added", "lines_removed",
                                                "branch", "commit") if k in ev.data}
                w.append(task_id, [make_event("task.done", pid, task_id, actor,
                                              view.record.last_clock + 1,
                                              {**data, "landed": "reviewed branch reached "
                                               f"{ev.data.get('base')}"}, w.now)])
                w.message = commit_message(pid, task_id, "done", actor)
                out.append(f"{pid}/{task_id}")

            repo.write(pid, decide)
    return out
