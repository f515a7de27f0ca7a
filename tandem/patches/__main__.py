"""``python -m tandem.patches``: print the registry as a Markdown table."""

from tandem.patches.registry import table

print(table())
