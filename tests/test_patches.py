"""Every patch of Django and asgiref is in the registry, and applied as listed."""

import os
import subprocess
import sys
from pathlib import Path

from tandem import patches
from tandem.db.scope import TaskConnections

ROOT = Path(__file__).resolve().parent.parent


def test_every_registered_patch_is_in_place():
    # django.test is imported by the test run: the testing group is applied too.
    assert set(patches.installed()) == {"core", "guard", "testing"}
    for patch in patches.REGISTRY:
        if not patches.applies(patch):
            continue
        current = patches.current(patch)
        if patch.wraps:  # the original, wrapped: the connections' storage, or a function
            assert isinstance(current, TaskConnections) or hasattr(current, "__wrapped__"), patch
        else:
            assert current is patch.resolve_replacement(), patch


def test_installed_remembers_django_originals():
    from django.core.handlers.base import BaseHandler

    originals = {(t, a): o for t, a, o in patches.installed()["core"]}
    original = originals[(BaseHandler, "make_view_atomic")]
    assert original.__module__ == "django.core.handlers.base"


def _run(code: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout


def test_production_never_imports_django_test():
    out = _run(
        "import sys, django\n"
        "django.setup()\n"
        "from django.core.asgi import get_asgi_application\n"
        "get_asgi_application()\n"
        "from asgiref.sync import SyncToAsync\n"
        "from tandem import patches\n"
        "print('django.test' in sys.modules, sorted(patches.installed()),\n"
        "      SyncToAsync.__call__.__module__)\n"
        "import django.test\n"
        "print(sorted(patches.installed()), django.test.TestCase._enter_atomics.__func__.__module__)\n"
    )
    assert out.splitlines() == [
        # SyncToAsync.__call__ is tandem's in production too: inside an aatomic
        # block thread-sensitive calls join it.
        "False ['core', 'guard'] tandem.db.routing",
        "['core', 'guard', 'testing'] tandem.testing.transactions",
    ]


def test_the_registry_prints_as_the_reference_table():
    out = subprocess.run(
        [sys.executable, "-m", "tandem.patches"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    assert out.count("\n| ") == len(patches.REGISTRY)  # one row each, after the header
    reference = (ROOT / "docs" / "reference.md").read_text()
    assert out.strip() in reference, "docs/reference.md lists an outdated patch table"
