"""What Django's own ``test_utils`` tests found under the conformance runner (issue 13).

* A ``mock.patch`` of ``BaseDatabaseWrapper.ensure_connection`` is called as
  stock Django calls it: without the wrapper, and a patch that calls the
  method it captured before patching gets the original (no recursion).
* Django's test cases refuse the databases a test did not declare; a task's
  own wrapper of a tandem alias refuses them too, with Django's messages.
* The runner's ``--apps all`` runs the apps Django's ``runtests.py`` runs.
"""

import asyncio
import threading
from unittest import mock

import pytest
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connections
from django.test import SimpleTestCase
from django.test.testcases import DatabaseOperationForbidden

from conformance import suite
from tandem import native
from tests.app.models import Author

ENSURE_CONNECTION = "django.db.backends.base.base.BaseDatabaseWrapper.ensure_connection"
REFUSED = ("connect", "temporary_connection", "cursor", "chunked_cursor")


# -- class patches of a guarded method -----------------------------------------
@pytest.mark.django_db(transaction=True)
def test_a_class_mock_is_called_without_the_wrapper():
    calls = []
    with mock.patch(ENSURE_CONNECTION, side_effect=lambda *a, **kw: calls.append((a, kw))):
        connections["default"].ensure_connection()
    assert calls == [((), {})]


def _patch_calling_what_it_captured(connection):
    """Django's AssertNumQueriesUponConnectionTests: the side effect calls the bound method."""
    real_ensure_connection = connection.ensure_connection  # captured before patching
    connection.close()
    opened = []

    def make_configuration_query():
        real_ensure_connection()
        opened.append(connection.connection is not None)

    with mock.patch(ENSURE_CONNECTION, side_effect=make_configuration_query):
        connection.ensure_connection()
    return opened


@pytest.mark.django_db(transaction=True)
def test_a_patch_calling_the_method_it_captured_gets_the_original():
    assert _patch_calling_what_it_captured(connections["default"]) == [True]


@pytest.mark.django_db(transaction=True)
async def test_the_same_inside_the_bridge():
    assert await native(lambda: _patch_calling_what_it_captured(connections["default"]))() == [True]


# -- databases a test did not declare -------------------------------------------
def _message(operation: str) -> str:
    return (
        f"Database {operation} to 'default' are not allowed in SimpleTestCase subclasses. Either "
        "subclass TestCase or TransactionTestCase to ensure proper test isolation or add "
        f"'default' to {__name__}.UndeclaredDatabaseInTasksTests.databases to silence this failure."
    )


class UndeclaredDatabaseInTasksTests(SimpleTestCase):
    """Django's async test methods run in a task: its wrappers are the task's own."""

    async def test_connect_and_temporary_connection_are_refused(self):
        wrapper = connections["default"]
        assert wrapper.task_owned
        with self.assertRaisesMessage(DatabaseOperationForbidden, _message("connections")):
            await native(wrapper.connect)()
        with self.assertRaisesMessage(DatabaseOperationForbidden, _message("connections")):
            await native(wrapper.temporary_connection)()

    async def test_queries_are_refused_as_queries(self):
        with self.assertRaisesMessage(DatabaseOperationForbidden, _message("queries")):
            await Author.objects.afirst()
        with self.assertRaisesMessage(DatabaseOperationForbidden, _message("queries")):
            await native(lambda: next(Author.objects.iterator()))()

    async def test_outside_the_bridge_the_async_safety_guard_refuses_first(self):
        with self.assertRaises(SynchronousOnlyOperation):
            list(Author.objects.all())

    def test_a_plain_threads_wrapper_is_left_as_django_leaves_it(self):
        raised = []

        def in_thread():
            try:
                Author.objects.first()
            except DatabaseOperationForbidden as exc:
                raised.append(str(exc))

        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join()
        assert raised == [_message("threaded connections")]


def test_the_refusals_end_with_the_test_class():
    wrapper_class = type(connections["default"])
    before = {name for name in REFUSED if name in wrapper_class.__dict__}

    class Probe(SimpleTestCase):
        databases = set()

    async def query():
        await Author.objects.afirst()

    Probe._add_databases_failures()
    try:
        assert {name for name in REFUSED if name in wrapper_class.__dict__} == set(REFUSED)
        with pytest.raises(DatabaseOperationForbidden, match="Database queries to 'default'"):
            asyncio.run(query())
    finally:
        Probe._remove_databases_failures()
        Probe.doClassCleanups()
    assert {name for name in REFUSED if name in wrapper_class.__dict__} == before


# -- the conformance runner's `--apps all` -------------------------------------
RUNTESTS = """
SUBDIRS_TO_SKIP = {
    "": {"import_error_package", "test_runner_apps"},
    "gis_tests": {"data"},
}
"""


def _suite_tree(tests, runtests=RUNTESTS):
    """A ``tests/`` directory shaped as Django's: packages, plain directories, files."""
    tests.mkdir()
    (tests / "runtests.py").write_text(runtests)
    (tests / "README.rst").write_text("")
    (tests / "urls").write_text("")  # a file without a dot
    for package in ("basic", "queries", "import_error_package", "test_runner_apps", "gis_tests", "with.dot"):
        (tests / package).mkdir()
        (tests / package / "__init__.py").write_text("")
    (tests / "gis_tests" / "data").mkdir()
    for directory in ("templates", "requirements"):  # no __init__.py
        (tests / directory).mkdir()
    return tests


def test_all_apps_are_the_packages_runtests_runs(tmp_path):
    tests = _suite_tree(tmp_path / "tests")
    # runtests.py's own skips, and gis_tests: no GIS backend in conformance.settings.
    assert suite.all_apps(tests) == ["basic", "queries"]


def test_all_apps_follow_the_skip_list_of_that_djangos_runtests(tmp_path):
    tests = _suite_tree(tmp_path / "tests", runtests='SUBDIRS_TO_SKIP = {"": {"basic"}}\n')
    assert suite.all_apps(tests) == ["import_error_package", "queries", "test_runner_apps"]
    (tests / "runtests.py").write_text("def get_test_modules(gis_enabled): ...\n")
    with pytest.raises(RuntimeError, match="no SUBDIRS_TO_SKIP"):
        suite.all_apps(tests)
