"""Django's cache, natively async: see docs/howto/cache.md.

It may import ``tandem.db``, ``tandem.bridge`` and ``tandem.conf``.
"""
