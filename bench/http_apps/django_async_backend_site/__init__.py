"""The bench endpoints on Django 6.1 with django-async-backend's async PostgreSQL backend.

A minimal Django project (settings, models, views, urls and asgi in this package). Run from the
repository root (``python -m bench.http_apps.serve`` takes the same arguments and keeps TCP_NODELAY
with several workers: see README.md)::

    uvicorn --app-dir . bench.http_apps.django_async_backend_site.asgi:application \
        --workers 2 --host 127.0.0.1 --port 8103

See ``settings.py`` for the pool and ``views.py`` for how the queries reach the database.
"""
