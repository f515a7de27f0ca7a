"""Fetch Django's own test suite: the ``tests/`` tree of Django's sdist.

The sdist matching the installed Django is downloaded once with pip and
its ``tests/`` directory kept in a cache (``TANDEM_CONFORMANCE_CACHE``,
default ``~/.cache/tandem-conformance``), so later runs work offline.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import django


def cache_dir() -> Path:
    """Where downloaded test suites (and run logs) are kept."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tandem-conformance"
    return Path(os.environ.get("TANDEM_CONFORMANCE_CACHE", default))


def tests_dir(version: str | None = None) -> Path:
    """The ``tests/`` directory of Django ``version`` (default: installed)."""
    version = version or django.get_version()
    target = cache_dir() / f"django-{version}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target / "tests" / "runtests.py").exists():
        _download(version, target)
    return target / "tests"


def all_apps(tests: Path) -> list[str]:
    """Every app of the suite in ``tests``, found as its ``runtests.py`` finds them.

    Django's ``runtests.py`` (``get_test_modules``) runs, when it is given no
    label, every directory at the top of ``tests/`` whose name has no dot and
    that holds an ``__init__.py``, except those its ``SUBDIRS_TO_SKIP[""]``
    names (read from that very file, so each Django version's own list
    applies) and ``gis_tests``, which it skips without a GIS database
    backend: ``conformance.settings`` configures none, and ``runtests.py``
    refuses ``gis_tests`` as a label then.
    """
    skip = _subdirs_to_skip(tests / "runtests.py") | {"gis_tests"}
    return sorted(
        entry.name
        for entry in tests.iterdir()
        if "." not in entry.name
        and entry.name not in skip
        and entry.is_dir()
        and (entry / "__init__.py").exists()
    )


def _subdirs_to_skip(runtests: Path) -> set[str]:
    """``SUBDIRS_TO_SKIP[""]`` of ``runtests``: the top-level directories it never runs."""
    for node in ast.parse(runtests.read_text(), str(runtests)).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "SUBDIRS_TO_SKIP" for target in node.targets
        ):
            return set(ast.literal_eval(node.value)[""])
    raise RuntimeError(f"{runtests}: no SUBDIRS_TO_SKIP; how does this Django find its test apps?")


def _download(version: str, target: Path) -> None:
    print(f"conformance: downloading Django {version}'s test suite (sdist) ...", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--disable-pip-version-check",
                "--no-binary",
                ":all:",
                "--no-deps",
                "--dest",
                tmp,
                f"django=={version}",
            ],
            check=True,
        )
        (sdist,) = Path(tmp).glob("*.tar.gz")
        prefix = f"{sdist.name.removesuffix('.tar.gz')}/tests/"
        # Unpacked beside the target, then renamed: the cache holds a whole
        # suite or none, even if this is interrupted or runs twice at once.
        partial = Path(tempfile.mkdtemp(prefix=f"{target.name}.", dir=target.parent))
        with tarfile.open(sdist) as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
            for member in members:
                member.name = member.name.removeprefix(prefix.removesuffix("tests/"))
            archive.extractall(partial, members=members, filter="data")
        try:
            partial.rename(target)
        except OSError:  # another run got there first
            shutil.rmtree(partial)
