"""The ORM fast lane: repeated query shapes reuse what Django built for them.

``get``: ``QuerySet.get()`` by exact values, whole; ``queries``: ``filter()``
and ``SQLCompiler.as_sql()`` for one-table queries. ``TANDEM_FAST_LANE =
False`` turns both off.
"""

from tandem.db.fastlane.get import forget

__all__ = ["forget"]
