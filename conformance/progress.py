"""How ``runtests.py`` tells ``python -m conformance`` what it is doing.

The runner in the ``runtests.py`` process (``conformance.runner``) appends
one line per event to the file named by ``TANDEM_CONFORMANCE_PROGRESS``,
flushed at once::

    start<TAB>test id           a test begins
    outcome<TAB>test id<TAB>passed   a test reported an outcome
    stop<TAB>test id            a test ended

``python -m conformance`` reads the new lines while it waits: the test that
has started and not stopped is the one a per-test timeout names, and the
outcomes are what is left of a run that had to be stopped (the JSON results
file is only written when the whole suite has run).

With ``--parallel`` above 1, Django's parallel runner hands its workers'
events to this process one test class at a time, after the class has run:
the timeout then measures the time between two classes, and the test it
names is the last one reported.
"""

from __future__ import annotations

import atexit
import os
import time
from pathlib import Path

ENVIRON = "TANDEM_CONFORMANCE_PROGRESS"
# Worst outcome wins when a test reports more than once (subtests).
RANK = {
    "passed": 0,
    "expected_failure": 0,
    "skipped": 1,
    "unexpected_success": 2,
    "failed": 3,
    "error": 4,
    "timeout": 5,
}


class Writer:
    """The ``runtests.py`` side: one line per event, flushed."""

    def __init__(self, path: str | None = None) -> None:
        path = path if path is not None else os.environ.get(ENVIRON)
        self._file = open(path, "a", buffering=1) if path else None  # kept open for the whole run
        if self._file is not None:
            # Closed by us, not by the interpreter's teardown: that one would
            # print a ResourceWarning into every runtests.py log.
            atexit.register(self._file.close)

    def event(self, kind: str, test_id: str, outcome: str | None = None) -> None:
        """Append one event (a no-op when no progress file was asked for)."""
        if self._file is None:
            return
        test_id = test_id.replace("\t", " ").replace("\n", " ")
        self._file.write("\t".join(filter(None, (kind, test_id, outcome))) + "\n")


class Reader:
    """The ``python -m conformance`` side: follows the file as it grows."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.last_event = time.monotonic()
        self.current: str | None = None  # started, not yet stopped
        self.last_started: str | None = None
        self.outcomes: dict[str, str] = {}
        self._offset = 0
        self._partial = ""

    def poll(self) -> None:
        """Read the lines written since the last poll."""
        try:
            with open(self.path) as f:
                f.seek(self._offset)
                chunk = f.read()
                self._offset = f.tell()
        except FileNotFoundError:
            return
        if not chunk:
            return
        self.last_event = time.monotonic()
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()  # an unfinished last line waits for the next poll
        for line in lines:
            kind, _, rest = line.partition("\t")
            if kind == "start":
                self.current = self.last_started = rest
            elif kind == "stop":
                if self.current == rest:
                    self.current = None
            elif kind == "outcome":
                test_id, _, outcome = rest.rpartition("\t")
                record(self.outcomes, test_id, outcome)


def record(outcomes: dict[str, str], test_id: str, outcome: str) -> None:
    """Keep ``outcome`` for ``test_id`` unless it already has a worse one."""
    previous = outcomes.get(test_id)
    if previous is None or RANK.get(outcome, 4) >= RANK.get(previous, 4):
        outcomes[test_id] = outcome
