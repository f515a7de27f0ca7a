"""The blocking detector: say so when sync code keeps the event loop too long.

Code running in the bridge holds the loop thread from the moment it is
switched into until its next ``await_()`` (or until it returns). Database
I/O of a tandem backend ends such a stretch within microseconds; a
``time.sleep``, a blocking HTTP client, a big file read or a long CPU loop
does not, and every other request of the worker waits meanwhile. When one
stretch lasts longer than ``TANDEM_BLOCKING_WARNING_MS`` (default 100;
``None`` turns the detector off) a warning goes to the ``tandem.blocking``
logger, naming the view, middleware or function (its dotted name), the
time, and the stack at the moment the loop got control back.

The time counted is the code's own: pauses of Python's cyclic garbage
collector are left out. A collection stops every thread, wherever it is
triggered, and under load a full one can take 100 ms or more; blamed on
whatever bridge code happened to be running, it made the warning name
innocent code (``docs/reliability.md``, "The loop under these loads").

The cost is two reads of that clock per switch into the bridge
(``bench/bridge.py`` measures it), plus a callback per collection.
"""

from __future__ import annotations

import gc
import logging
import time
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from django.core.exceptions import ImproperlyConfigured

from tandem import conf
from tandem.bridge import greenlets as bridge

__all__ = ["dotted_name", "install", "report"]

logger = logging.getLogger("tandem.blocking")
_BRIDGE_FILE = bridge.__file__


def dotted_name(fn: Callable[..., Any]) -> str:
    """``module.Class.method`` for a callable, as far as it tells."""
    target = getattr(fn, "func", fn)  # functools.partial
    owner = getattr(target, "__self__", None)
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    if owner is not None and not isinstance(owner, (type, ModuleType)) and "." not in name:
        name = f"{type(owner).__qualname__}.{name}"
    module = getattr(target, "__module__", None) or type(target).__module__
    return f"{module}.{name}"


def _stack(suspended_in) -> str:
    frame = suspended_in.gr_frame
    frames = [f for f in traceback.extract_stack(frame) if f.filename != _BRIDGE_FILE] if frame else []
    if not frames:
        return "  (it returned)\n"
    return "".join(traceback.format_list(frames))


def report(fn: Callable[..., Any], seconds: float, suspended_in) -> None:
    """Log that ``fn`` held the loop ``seconds`` before giving it back."""
    threshold = conf.blocking_warning_seconds() or 0
    logger.warning(
        "%s held the event loop for %.0f ms (TANDEM_BLOCKING_WARNING_MS = %g): every other "
        "request of this worker waited. It gave the loop back here:\n%s"
        "Make that code do its I/O through tandem (the database, or await_()), or keep it "
        "off the loop with @tandem.handlers.in_thread / TANDEM_THREAD_MIDDLEWARE.",
        dotted_name(fn),
        seconds * 1000,
        threshold * 1000,
        _stack(suspended_in),
        extra={"duration": seconds, "callable": dotted_name(fn)},
    )


class _GarbageCollectorClock:
    """``perf_counter()`` minus the time spent in Python's garbage collector so far."""

    def __init__(self) -> None:
        self.collecting = 0.0  # seconds spent in finished collections
        self._started: float | None = None

    def __call__(self) -> float:
        return time.perf_counter() - self.collecting

    def on_collection(self, phase: str, info: dict) -> None:
        """A ``gc.callbacks`` entry: time each collection."""
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.collecting += time.perf_counter() - self._started
            self._started = None


clock = _GarbageCollectorClock()


def install() -> None:
    """Watch the bridge with the configured threshold (again whenever it changes)."""
    conf.subscribe(_setting_changed)
    threshold = conf.blocking_warning_seconds()
    watching = threshold is not None
    if watching and clock.on_collection not in gc.callbacks:
        gc.callbacks.append(clock.on_collection)
    elif not watching and clock.on_collection in gc.callbacks:
        gc.callbacks.remove(clock.on_collection)
    bridge.set_blocking_watch(threshold, report, clock)


def _setting_changed(setting: str) -> None:
    if setting == "TANDEM_BLOCKING_WARNING_MS":
        try:
            install()
        except ImproperlyConfigured:
            bridge.set_blocking_watch(None)  # reading the setting raises: checks say so
