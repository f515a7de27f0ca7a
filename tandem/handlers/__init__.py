"""Django's request path on the event loop.

``placement``: where sync request code runs (the loop or a thread) and the
``on_loop``/``in_thread`` decorators; ``views``: how the async handler calls
a view; ``blocking``: the detector that names code holding the loop.
"""

from tandem.handlers.placement import in_thread, on_loop

__all__ = ["in_thread", "on_loop"]
