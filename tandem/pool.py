"""The connection pools' public API, at the path the docs have always given.

The pool itself lives in the database layer, ``tandem.db.pool``: this
module names what users may rely on (``loop_pools()`` for metrics,
``PoolTimeout`` to catch, ``PoolOptions`` for the settings).
"""

from tandem.db.pool import Pool, PoolOptions, PoolTimeout, loop_pools, pool_for

__all__ = ["Pool", "PoolOptions", "PoolTimeout", "loop_pools", "pool_for"]
