"""The test runner ``conformance.settings`` gives Django's ``runtests.py``.

It is Django's ``DiscoverRunner`` plus three things: in every mode but
stock (sync, bridged and the mixed modes: tandem is installed) it points
Django's Redis cache and SMTP email paths at tandem's
backends (``conformance.backends``), in bridged mode it runs every test
through the bridge (``conformance.bridged``), and it records the outcome of
every test, by test id, in the JSON file named by
``TANDEM_CONFORMANCE_RESULTS`` for ``python -m conformance`` to compare,
and reports each test as it starts and ends (``conformance.progress``), so
that a test that hangs can be named and stopped. The mixed modes run each
test as sync mode does, in the test thread: with a stock alias, sync code
must run outside the bridge (docs/conformance.md, "Mixed aliases").
"""

from __future__ import annotations

import json
import os
import unittest

from django.conf import settings
from django.test.runner import DiscoverRunner

from conformance import backends, bridged, progress

outcomes: dict[str, str] = {}
_progress = progress.Writer()


def record(test, outcome: str) -> None:
    """Remember ``outcome`` for ``test``, unless it already did worse."""
    progress.record(outcomes, test.id(), outcome)
    _progress.event("outcome", test.id(), outcome)


class RecordingResult(unittest.TextTestResult):
    """A text result that also records each test's outcome."""

    def startTest(self, test):  # noqa: N802 - unittest's name
        _progress.event("start", test.id())
        super().startTest(test)

    def stopTest(self, test):  # noqa: N802 - unittest's name
        super().stopTest(test)
        _progress.event("stop", test.id())

    def addSuccess(self, test):  # noqa: N802 - unittest's name
        super().addSuccess(test)
        record(test, "passed")

    def addFailure(self, test, err):  # noqa: N802 - unittest's name
        super().addFailure(test, err)
        record(test, "failed")

    def addError(self, test, err):  # noqa: N802 - unittest's name
        super().addError(test, err)
        # Errors in setUpClass/tearDownClass come as a _ErrorHolder whose id
        # names the class: kept under that id.
        record(test, "error")

    def addSkip(self, test, reason):  # noqa: N802 - unittest's name
        super().addSkip(test, reason)
        # A skipped subtest is kept under its test's id: its own id carries
        # the subtest's parameters, whose reprs (object addresses) differ in
        # every run. A test with a skipped subtest gets no addSuccess.
        record(getattr(test, "test_case", test), "skipped")

    def addExpectedFailure(self, test, err):  # noqa: N802 - unittest's name
        super().addExpectedFailure(test, err)
        record(test, "expected_failure")

    def addUnexpectedSuccess(self, test):  # noqa: N802 - unittest's name
        super().addUnexpectedSuccess(test)
        record(test, "unexpected_success")

    def addSubTest(self, test, subtest, err):  # noqa: N802 - unittest's name
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            record(test, "failed" if failed else "error")


class ConformanceRunner(DiscoverRunner):
    """``DiscoverRunner`` that records outcomes and, in bridged mode, bridges."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        mode = os.environ.get("TANDEM_CONFORMANCE_MODE")
        if mode != "stock":
            backends.install()  # before the test modules are imported
        if mode == "bridged":
            bridged.install()
        # The log says which backend each alias is on (the mixed modes put one on each).
        engines = ", ".join(f"{alias}={entry['ENGINE']}" for alias, entry in settings.DATABASES.items())
        print(f"conformance: {mode} mode: {engines}", flush=True)

    def get_resultclass(self):
        return RecordingResult

    def teardown_databases(self, old_config, **kwargs):
        bridged.close()  # pooled connections would keep test databases open
        super().teardown_databases(old_config, **kwargs)

    def suite_result(self, suite, result, **kwargs):
        path = os.environ.get("TANDEM_CONFORMANCE_RESULTS")
        if path:
            with open(path, "w") as f:
                json.dump(outcomes, f, indent=0, sort_keys=True)
        return super().suite_result(suite, result, **kwargs)
