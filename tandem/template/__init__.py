"""Async twins of ``django.template`` helpers: see ``tandem.template.loader``.

It may import ``tandem.bridge``.
"""
