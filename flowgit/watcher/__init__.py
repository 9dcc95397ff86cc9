"""flowgit watch: the observer and trigger, signals, schedules, waits."""
