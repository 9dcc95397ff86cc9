"""flowgit: a git-native, file-based orchestrator for plan-first development."""
__version__ = "0.2.0"
