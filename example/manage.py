#!/usr/bin/env python
"""Django's command-line utility for the tandem demo project."""

import os
import sys


def main() -> None:
    """Run a management command with the demo settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
