"""Fetch Django's own test suite: the ``tests/`` tree of Django's sdist.

The sdist matching the installed Django is downloaded once with pip and
its ``tests/`` directory kept in a cache (``TANDEM_CONFORMANCE_CACHE``,
default ``~/.cache/tandem-conformance``), so later runs work offline.
"""

from __future__ import annotations

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
