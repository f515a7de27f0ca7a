"""Email backends whose network I/O is awaited on the loop inside the bridge."""
