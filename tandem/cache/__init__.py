"""Django's cache, natively async: see docs/howto/cache.md."""
