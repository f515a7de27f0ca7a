"""Faults, load and isolation against real database servers (issue 11).

``python -m chaos`` (``make chaos``) is the entry point; see
``docs/reliability.md`` for what each scenario proves and how to read its
table.
"""
