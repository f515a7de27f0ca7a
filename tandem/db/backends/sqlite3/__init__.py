"""SQLite through the standard library's sqlite3, each connection on a worker thread in the bridge."""
