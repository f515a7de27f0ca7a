"""System checks catch a half-done tandem setup."""

from django.apps import apps
from django.conf import settings

from tandem.checks import check_tandem_configuration


def ids(messages):
    return [m.id for m in messages]


def test_configured_project_passes():
    assert check_tandem_configuration() == []


def test_tandem_engine_without_the_app(monkeypatch):
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "tandem")
    assert ids(check_tandem_configuration()) == ["tandem.E001"]


def test_app_without_a_tandem_engine(monkeypatch):
    monkeypatch.setattr(settings, "DATABASES", {"default": {"ENGINE": "django.db.backends.postgresql"}})
    assert ids(check_tandem_configuration()) == ["tandem.W001"]


def test_invalid_pool_options(monkeypatch):
    tandem_db = {"ENGINE": "tandem.db.backends.postgresql", "OPTIONS": {"pool": {"size": 1}}}
    monkeypatch.setattr(settings, "DATABASES", {"default": tandem_db})
    (error,) = check_tandem_configuration()
    assert error.id == "tandem.E003" and "'size'" in error.msg
