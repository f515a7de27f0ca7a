"""tandem's own settings, validated once and cached.

Every value is read from ``django.conf.settings`` on first use and kept
until a ``setting_changed`` signal (``override_settings`` in tests) names a
``TANDEM_*`` setting. A bad value raises ``ImproperlyConfigured`` naming the
setting; ``tandem.checks`` reports the same at startup.

This module imports nothing of tandem: every other layer may read it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "blocking_warning_seconds",
    "cooperative_io",
    "fast_lane",
    "forget",
    "request_path",
    "subscribe",
    "sync_views",
    "thread_middleware",
    "validate",
]

_cache: dict[str, Any] = {}
_subscribers: list[Callable[[str], None]] = []


def _choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = getattr(settings, name, default)
    if value not in choices:
        raise ImproperlyConfigured(
            f"settings.{name} must be one of {', '.join(map(repr, choices))}, not {value!r}."
        )
    return value


def _cached(name: str, read) -> Any:
    try:
        return _cache[name]
    except KeyError:
        value = _cache[name] = read()
        return value


def request_path() -> str:
    """``TANDEM_REQUEST_PATH``: ``"native"`` (default) or ``"threads"`` (stock Django)."""
    return _cached(
        "TANDEM_REQUEST_PATH", lambda: _choice("TANDEM_REQUEST_PATH", "native", ("native", "threads"))
    )


def sync_views() -> str:
    """``TANDEM_SYNC_VIEWS``: ``"threads"`` (default) or ``"native"``."""
    choices = ("threads", "native")
    return _cached("TANDEM_SYNC_VIEWS", lambda: _choice("TANDEM_SYNC_VIEWS", "threads", choices))


def _read_thread_middleware() -> frozenset[str]:
    value = getattr(settings, "TANDEM_THREAD_MIDDLEWARE", ())
    if isinstance(value, str) or not all(isinstance(item, str) for item in value):
        raise ImproperlyConfigured(
            f"settings.TANDEM_THREAD_MIDDLEWARE must be a list of middleware dotted paths, not {value!r}."
        )
    return frozenset(value)


def thread_middleware() -> frozenset[str]:
    """``TANDEM_THREAD_MIDDLEWARE``: dotted paths of middleware kept in threads."""
    return _cached("TANDEM_THREAD_MIDDLEWARE", _read_thread_middleware)


def _read_blocking_warning() -> float | None:
    value = getattr(settings, "TANDEM_BLOCKING_WARNING_MS", 100)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ImproperlyConfigured(
            f"settings.TANDEM_BLOCKING_WARNING_MS must be a number of milliseconds > 0 "
            f"or None (off), not {value!r}."
        )
    return value / 1000


def blocking_warning_seconds() -> float | None:
    """``TANDEM_BLOCKING_WARNING_MS`` in seconds (default 0.1), or None when off."""
    return _cached("TANDEM_BLOCKING_WARNING_MS", _read_blocking_warning)


def _read_bool(name: str, default: bool) -> bool:
    value = getattr(settings, name, default)
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"settings.{name} must be True or False, not {value!r}.")
    return value


def fast_lane() -> bool:
    """``TANDEM_FAST_LANE``: repeated query shapes reuse their compiled SQL (default True)."""
    return _cached("TANDEM_FAST_LANE", lambda: _read_bool("TANDEM_FAST_LANE", True))


def cooperative_io() -> bool:
    """``TANDEM_COOPERATIVE_IO``: blocking socket calls and sleeps in the bridge wait on the loop (True)."""
    return _cached("TANDEM_COOPERATIVE_IO", lambda: _read_bool("TANDEM_COOPERATIVE_IO", True))


def validate() -> list[str]:
    """Read every setting; return the error messages of the bad ones."""
    errors = []
    readers = (
        request_path,
        sync_views,
        thread_middleware,
        blocking_warning_seconds,
        fast_lane,
        cooperative_io,
    )
    for read in readers:
        try:
            read()
        except ImproperlyConfigured as exc:
            errors.append(str(exc))
    return errors


def subscribe(callback: Callable[[str], None]) -> None:
    """Call ``callback(setting)`` after each change of a ``TANDEM_*`` setting (idempotent).

    How the modules that act on a setting hear of its change, so that this
    module imports nothing of tandem.
    """
    if callback not in _subscribers:
        _subscribers.append(callback)


def forget(setting: str = "", **kwargs: Any) -> None:
    """Drop a cached value and tell the subscribers (connected to ``setting_changed``)."""
    if setting.startswith("TANDEM_"):
        _cache.pop(setting, None)
        for callback in _subscribers:
            callback(setting)
