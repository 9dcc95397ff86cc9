"""The .flow/ tree on disk: reading, the lock, the write door, recovery."""
