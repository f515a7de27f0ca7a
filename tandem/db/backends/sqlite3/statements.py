"""What a SQLite statement may do, from its text, and which statements ran long.

``statement_kind`` sorts a statement into reads, writes, ``BEGIN``,
savepoints and the rest: that decides whether it may run on the loop and
what happens at the budget. ``Memory`` remembers, per database, the SQL
texts that ran past the budget or called a Python function of the user's.
See docs/concepts/sqlite.md.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "BEGIN",
    "LONG_MEMORY",
    "OTHER",
    "READ",
    "SAVEPOINT",
    "WRITE",
    "Memory",
    "memories",
    "statement_kind",
]

# SQL texts remembered per database as running past the budget (stopped or
# paused: they go to the worker at once), and as calling Python functions.
LONG_MEMORY = 512

# -- what a statement may do, from its text ------------------------------------------

READ = "read"  # changes nothing: may be interrupted anywhere
WRITE = "write"  # INSERT, UPDATE, DELETE, REPLACE, or a WITH that ends in one
BEGIN = "begin"  # takes a lock, changes nothing
SAVEPOINT = "savepoint"  # SAVEPOINT, RELEASE, ROLLBACK TO: inside a transaction, a write
OTHER = "other"  # COMMIT, ROLLBACK, PRAGMA, DDL, ATTACH, VACUUM...: the worker's

# One character or comment at a time before the word: no nested repetition to backtrack through.
_FIRST_WORD = re.compile(r"(?:\s|\(|--[^\n]*(?:\n|$)|/\*.*?\*/)*([A-Za-z]+)", re.DOTALL)
_WRITE_WORD = re.compile(r"\b(?:INSERT|UPDATE|DELETE|REPLACE)\b", re.IGNORECASE)
_ROLLBACK_TO = re.compile(r"ROLLBACK(?:\s+TRANSACTION)?\s+TO\b", re.IGNORECASE)
_KINDS = {
    "SELECT": READ,
    "VALUES": READ,
    "EXPLAIN": READ,  # explains a statement without running it
    "INSERT": WRITE,
    "UPDATE": WRITE,
    "DELETE": WRITE,
    "REPLACE": WRITE,
    "BEGIN": BEGIN,
    "SAVEPOINT": SAVEPOINT,
    "RELEASE": SAVEPOINT,
}

# Kinds by SQL text: the ORM sends the same few texts over and over, and a
# lookup costs a hash of the string. Bounded: cleared when full.
_kinds: dict[str, str] = {}
_MAX_KINDS = 2048


def statement_kind(sql: Any) -> str:
    """``READ``, ``WRITE``, ``BEGIN``, ``SAVEPOINT`` or ``OTHER``, from the statement's text.

    Errs towards caution: a ``WITH`` that names ``INSERT``, ``UPDATE``,
    ``DELETE`` or ``REPLACE`` anywhere (even in a string) is a write.
    """
    kind = _kinds.get(sql) if isinstance(sql, str) else OTHER
    if kind is None:
        kind = _classify(sql)
        if len(_kinds) >= _MAX_KINDS:
            _kinds.clear()
        _kinds[sql] = kind
    return kind


def _classify(sql: str) -> str:
    match = _FIRST_WORD.match(sql)
    if match is None:
        return OTHER
    word = match.group(1).upper()
    if word == "WITH":
        return WRITE if _WRITE_WORD.search(sql) else READ
    if word == "ROLLBACK":
        return SAVEPOINT if _ROLLBACK_TO.match(sql, match.start(1)) else OTHER
    return _KINDS.get(word, OTHER)


# -- statements that ran long ---------------------------------------------------------


class Memory:
    """Statements of one database that should not start on the loop."""

    __slots__ = ("calls_python", "long")

    def __init__(self) -> None:
        self.long: dict[str, None] = {}  # ran past the budget; forgotten once short again
        self.calls_python: dict[str, None] = {}  # called a guarded function

    # Worker threads of several connections may change these at once: each
    # step is one dict operation, and a key another thread removed first is fine.
    @staticmethod
    def note(table: dict[str, None], sql: str) -> None:
        """Remember ``sql`` in ``table``, forgetting the oldest text if it is full."""
        if len(table) >= LONG_MEMORY:
            try:
                table.pop(next(iter(table)), None)  # the oldest
            except (StopIteration, RuntimeError):  # emptied, or changed, meanwhile
                pass
        table[sql] = None


# The memory of each database, by the name its connections were opened with.
memories: dict[str, Memory] = {}
