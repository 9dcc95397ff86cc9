"""The prompt an executor is given for a task; built in `flowgit.ops.prompt`, so that `task
show` and MCP give an agent the same text."""
from __future__ import annotations

from flowgit.ops.prompt import task_prompt

__all__ = ["task_prompt"]
