"""Operations over a repository: phase moves, sync, history."""
