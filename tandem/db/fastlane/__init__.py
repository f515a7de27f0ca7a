"""The ORM fast lane: repeated query shapes reuse what Django built for them.

Three lanes, each a patch of one Django method (``tandem.patches``):

* ``get``: ``QuerySet.get()`` by exact values, served whole from a plan;
* ``filter``: ``QuerySet.filter()`` rebuilds the query Django built;
* ``compiled``: ``SQLCompiler.as_sql()`` reuses a one-table query's SQL.

They share ``plain`` (what a plain queryset and a simple query are) and
``cache`` (what was learned, per lane, model and shape; when it ends; how
much it served). Imports go one way: this package imports the lanes, the
lanes import ``plain`` and ``cache``, which import nothing of the others.

Public: ``forget()`` drops every learned shape (connected to
``setting_changed``), ``stats(model=None)`` tells per lane what was learned
and how often it served (``LaneStats``). ``TANDEM_FAST_LANE = False``
turns every lane off.
"""

# Each lane makes its cache when imported; stats() lists them in this order.
# isort: off
from tandem.db.fastlane import get, filter, compiled  # noqa: F401

# isort: on
from tandem.db.fastlane.cache import LaneStats, forget, stats

__all__ = ["LaneStats", "forget", "stats"]
