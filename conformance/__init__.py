"""Django's own test suite, run against tandem's backends.

``python -m conformance`` (``make conformance``) is the entry point; see
``docs/conformance.md`` for what it proves and how to read its tables.
"""
