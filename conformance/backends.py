"""With tandem installed (every mode but stock), Django's Redis cache and SMTP email paths name
tandem's backends.

Django's suite reaches these backends by their stock import paths, never by
a setting we could change:

* ``cache/tests.py`` runs ``RedisCacheTests`` against the ``CACHES`` entry
  whose ``BACKEND`` is the string
  ``"django.core.cache.backends.redis.RedisCache"`` (and asserts that
  ``cache._class is RedisCacheClient``, imported from Django's module);
* the ``mail`` tests build ``smtp.EmailBackend(...)`` from
  ``django.core.mail.backends.smtp`` and look it up by its dotted path
  (``get_connection()``, Django 6.1's ``MAILERS``).

So, before the test modules are imported, ``install()`` rebinds those names
in Django's modules to tandem's subclasses: the string and the attribute
both give ``tandem.cache.backends.redis.RedisCache`` (and its client) and
``tandem.mail.backends.smtp.EmailBackend``, and the very tests that run
Django's backends on stock run tandem's. tandem's classes were built on
Django's before the rebinding, so they still inherit Django's code. Stock
mode never calls it.
"""

from __future__ import annotations

_installed = False


def install() -> None:
    """Make Django's Redis cache and SMTP email backend paths resolve to tandem's classes."""
    global _installed
    if _installed:
        return
    from django.core.cache.backends import redis as django_redis
    from django.core.mail.backends import smtp as django_smtp

    from tandem.cache.backends import redis as tandem_redis
    from tandem.mail.backends import smtp as tandem_smtp

    django_redis.RedisCache = tandem_redis.RedisCache
    django_redis.RedisCacheClient = tandem_redis.RedisCacheClient
    django_smtp.EmailBackend = tandem_smtp.EmailBackend
    _installed = True
