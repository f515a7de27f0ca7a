"""Django's request path on the event loop.

``placement``: where sync request code runs (the loop or a thread) and the
``on_loop``/``in_thread`` decorators; ``views``: how the async handler calls
a view (``ATOMIC_REQUESTS``, sync views). The detector that names code
holding the loop is the bridge's (``tandem.bridge.blocking``).

It may import ``tandem.transaction``, ``tandem.db``, ``tandem.bridge`` and
``tandem.conf``.
"""

from tandem.handlers.placement import in_thread, on_loop

__all__ = ["in_thread", "on_loop"]
