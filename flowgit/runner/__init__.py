"""flowgit run: worktrees, executors, merge-with-done, the dispatcher."""
