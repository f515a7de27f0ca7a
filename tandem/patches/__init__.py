"""The patch registry: every change tandem makes to Django and asgiref, and how it is made.

``registry`` holds the data (``REGISTRY``: target, attribute, replacement,
reason), ``apply`` the mechanism (``install``, ``installed``,
``when_imported``). Replacements are named by strings, so this layer
imports nothing else of tandem and every other layer may use it;
activation, which applies the groups, is ``tandem.apps``.
``python -m tandem.patches`` prints the table ``docs/reference.md`` shows.
"""

from tandem.patches.apply import applies, current, install, installed, when_imported
from tandem.patches.registry import REGISTRY, Patch, table

__all__ = ["REGISTRY", "Patch", "applies", "current", "install", "installed", "table", "when_imported"]
