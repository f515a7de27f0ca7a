"""System checks catch a half-done tandem setup."""

from django.apps import apps
from django.conf import settings
from django.db import connections

from tandem.checks import check_tandem_configuration


def ids(messages):
    return [m.id for m in messages]


def test_configured_project_passes():
    assert check_tandem_configuration() == []


def test_tandem_engine_without_the_app_is_reported_by_the_backend(monkeypatch):
    assert connections["default"].validation.check() == []
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "tandem")
    (error,) = connections["default"].validation.check()
    assert error.id == "tandem.E001" and "'default'" in error.msg


def test_backend_check_runs_with_djangos_database_checks(monkeypatch):
    from django.core import checks

    monkeypatch.setattr(apps, "is_installed", lambda name: name != "tandem")
    found = checks.run_checks(databases=["default"], tags=[checks.Tags.database])
    assert "tandem.E001" in ids(found)


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
