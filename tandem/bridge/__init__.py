"""The bridge layer: synchronous code on the event loop, its waits turned into awaits.

What is here knows nothing of databases, Django's ORM or requests:

* ``greenlets``: ``native()``, ``await_()``, ``in_bridge()``: the greenlet
  bridge itself, and the hooks other layers set (a unit of work's brackets,
  the blocking watch);
* ``settling``: work that must reach its outcome although its task was
  cancelled (a COMMIT in flight);
* ``locks``: ``BridgeLock`` and ``TaskLock``, and ``Waiters``, the one way a
  waiting task is handed what it waits for;
* ``placing``: the one decision "run this sync callable natively, or in a
  thread"; ``callables``: the one test "is this callable async?";
* ``blocking``: the detector that names code holding the loop;
* ``cooperative``: blocking socket, TLS and name-resolution calls and
  ``time.sleep`` of sync code in the bridge, waiting on the loop.

It may import ``tandem.conf`` and nothing else of tandem.
"""

from tandem.bridge.callables import is_async_callable
from tandem.bridge.greenlets import (
    MAX_IDLE_BRIDGES,
    OutsideBridgeError,
    await_,
    call_native,
    current_bridge,
    in_bridge,
    native,
    set_blocking_watch,
    set_unit_hook,
    unfinished_bridges,
)
from tandem.bridge.settling import Settling, current_settling, settling

__all__ = [
    "MAX_IDLE_BRIDGES",
    "OutsideBridgeError",
    "Settling",
    "await_",
    "call_native",
    "current_bridge",
    "current_settling",
    "in_bridge",
    "is_async_callable",
    "native",
    "set_blocking_watch",
    "set_unit_hook",
    "settling",
    "unfinished_bridges",
]
