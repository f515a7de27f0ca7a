"""Django's SQLite test-database creation, aware of WAL files.

A database in WAL mode keeps recent commits in ``<name>-wal`` until a
checkpoint copies them into the file itself. Django's creation code only
knows the file, so:

* when it deletes a test database it also deletes the WAL and shared-memory
  files; a WAL left over from a crashed run would otherwise be replayed
  into the new database of the same name;
* before it copies the test database for parallel test processes, we
  checkpoint, or the copies would miss everything still in the WAL.
"""

from __future__ import annotations

import contextlib
import os

from django.db.backends.sqlite3 import creation as django_creation

__all__ = ["DatabaseCreation", "remove_sidecars"]

# Files SQLite keeps next to a database, by suffix.
SIDECARS = ("-wal", "-shm", "-journal")


def remove_sidecars(database_name: str | os.PathLike) -> None:
    """Delete the WAL, shared-memory and rollback-journal files of a database."""
    for suffix in SIDECARS:
        with contextlib.suppress(FileNotFoundError):
            os.remove(f"{os.fspath(database_name)}{suffix}")


class DatabaseCreation(django_creation.DatabaseCreation):
    """Django's SQLite ``DatabaseCreation``, plus WAL housekeeping."""

    def _create_test_db(self, verbosity, autoclobber, keepdb=False):
        name = super()._create_test_db(verbosity, autoclobber, keepdb)
        if not keepdb and not self.is_in_memory_db(name):
            remove_sidecars(name)
        return name

    def _destroy_test_db(self, test_database_name, verbosity):
        super()._destroy_test_db(test_database_name, verbosity)
        if test_database_name and not self.is_in_memory_db(test_database_name):
            remove_sidecars(test_database_name)

    def _clone_test_db(self, suffix, verbosity, keepdb=False):
        source = self.connection.settings_dict["NAME"]
        if not self.is_in_memory_db(source):
            target = self.get_test_db_clone_settings(suffix)["NAME"]
            if not (keepdb and os.access(target, os.F_OK)):
                remove_sidecars(target)
                self._checkpoint()
        super()._clone_test_db(suffix, verbosity, keepdb)

    def _checkpoint(self) -> None:
        # Copy every commit from the WAL into the database file (a no-op
        # for a database not in WAL mode).
        with self.connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
