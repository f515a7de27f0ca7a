"""Cache backends whose I/O tandem turns into awaits."""
