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

The cost is two ``time.perf_counter()`` calls per switch into the bridge
(``bench/bridge.py`` measures it).
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from types import ModuleType
from typing import Any

from tandem import bridge, conf

__all__ = ["install", "report"]

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


def install() -> None:
    """Watch the bridge with the configured threshold (re-run when it changes)."""
    bridge.set_blocking_watch(conf.blocking_warning_seconds(), report)
