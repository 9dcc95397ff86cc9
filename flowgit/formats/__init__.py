"""File formats: YAML round-trip, Markdown plans, schemas, plan diffs, the JSONL merge."""
