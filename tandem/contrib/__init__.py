"""``django.contrib`` on the loop: sessions and auth natively, hashing off it."""
