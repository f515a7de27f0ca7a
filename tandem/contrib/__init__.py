"""``django.contrib`` on the loop: sessions and auth natively, hashing off it.

It may import ``tandem.db``, ``tandem.bridge`` and ``tandem.conf``.
"""
