"""System checks catch a half-done tandem setup."""

import subprocess
import sys

from django.apps import apps
from django.conf import settings
from django.db import connections
from django.test import override_settings

from tandem.checks import check_tandem_configuration


def ids(messages):
    return [m.id for m in messages]


def test_configured_project_passes():
    assert check_tandem_configuration() == []


# A project whose settings never installed the app: tandem was never activated.
_WITHOUT_THE_APP = """
import django
from django.conf import settings
settings.configure(
    DATABASES={"default": {"ENGINE": "tandem.db.backends.sqlite3", "NAME": ":memory:"}},
    INSTALLED_APPS=["django.contrib.contenttypes"],
)
django.setup()
from django.core import checks
from django.db import connections
print(*[m.id for m in connections["default"].validation.check()])
print(*[m.id for m in checks.run_checks(databases=["default"], tags=[checks.Tags.database])])
"""


def test_tandem_engine_without_the_app_is_reported_by_the_backend():
    run = subprocess.run([sys.executable, "-c", _WITHOUT_THE_APP], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    backend, database_checks = run.stdout.splitlines()
    assert backend == "tandem.E001"  # the backend's own check
    assert database_checks == "tandem.E001"  # and Django's database checks (migrate, check --database)


def test_an_app_list_overridden_in_a_test_is_not_a_missing_app():
    # Django 6.1's migrations.test_commands...test_migrate_runs_database_system_checks does this:
    # tandem stays activated, so its backend has nothing to report.
    from django.core import checks

    with override_settings(INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"]):
        assert not apps.is_installed("tandem")
        assert connections["default"].validation.check() == []
        found = checks.run_checks(databases=["default"], tags=[checks.Tags.database])
    assert "tandem.E001" not in ids(found)


def test_app_checks_run_without_database_flag():
    from django.core import checks

    assert check_tandem_configuration in checks.registry.registry.get_checks(include_deployment_checks=False)
    assert checks.Tags.database not in check_tandem_configuration.tags


def test_app_without_a_tandem_engine(monkeypatch):
    monkeypatch.setattr(settings, "DATABASES", {"default": {"ENGINE": "django.db.backends.postgresql"}})
    assert ids(check_tandem_configuration()) == ["tandem.W001"]


def test_invalid_pool_options(monkeypatch):
    tandem_db = {"ENGINE": "tandem.db.backends.postgresql", "OPTIONS": {"pool": {"size": 1}}}
    monkeypatch.setattr(settings, "DATABASES", {"default": tandem_db})
    (error,) = check_tandem_configuration()
    assert error.id == "tandem.E003" and "'size'" in error.msg
