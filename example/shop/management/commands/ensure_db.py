"""``manage.py ensure_db``: create the server database of ``DATABASES["default"]`` if missing."""

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand
from psycopg import sql


class Command(BaseCommand):
    """Create the demo database on a fresh PostgreSQL server; do nothing if it exists.

    ``migrate`` can't do this itself: it connects to the database it migrates.
    So we connect to the server's ``postgres`` maintenance database instead,
    with the same host, port and credentials.
    """

    help = "Create the default database if it does not exist yet."
    # Checks would be pointless (and the database they might query may not exist).
    requires_system_checks = []

    def handle(self, *args, **options) -> None:
        db = settings.DATABASES["default"]
        name = db["NAME"]
        vendor = db["ENGINE"].rsplit(".", 1)[-1]
        if vendor == "sqlite3":
            self.stdout.write(f"SQLite: {name} is created on first use.")
            return
        if vendor == "mysql":
            self.create_mysql(db)
            return
        params = {
            key: value
            for key, value in {
                "host": db["HOST"],
                "port": db["PORT"],
                "user": db["USER"],
                "password": db["PASSWORD"],
            }.items()
            if value
        }
        # CREATE DATABASE refuses to run inside a transaction block: autocommit.
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                self.stdout.write(f"Database {name!r} already exists.")
                return
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.stdout.write(self.style.SUCCESS(f"Created database {name!r}."))

    def create_mysql(self, db: dict) -> None:
        """CREATE DATABASE IF NOT EXISTS on MariaDB/MySQL (it has that)."""
        import MySQLdb

        login = {"host": db["HOST"] or "127.0.0.1", "user": db["USER"] or "root", "passwd": db["PASSWORD"]}
        conn = MySQLdb.connect(**login, port=int(db["PORT"] or 3306))
        try:
            name = db["NAME"].replace("`", "``")
            conn.cursor().execute(f"CREATE DATABASE IF NOT EXISTS `{name}` CHARACTER SET utf8mb4")
        finally:
            conn.close()
        self.stdout.write(self.style.SUCCESS(f"Database {db['NAME']!r} is there."))
