"""Records where each SQL query of the test run executed."""

import threading
from dataclasses import dataclass

from django.db.backends.signals import connection_created

from tandem import in_bridge


@dataclass
class Query:
    alias: str
    sql: str
    thread: int
    bridged: bool


log: list[Query] = []


def _record(execute, sql, params, many, context):
    log.append(Query(context["connection"].alias, sql, threading.get_ident(), in_bridge()))
    return execute(sql, params, many, context)


def _install(sender, connection, **kwargs):
    if _record not in connection.execute_wrappers:
        connection.execute_wrappers.append(_record)


connection_created.connect(_install)
