"""WSGI entry point, for sync Django under a threaded server (bench/http.py's baseline).

``gunicorn demo.wsgi:application -k gthread`` (run from example/).
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo.settings")

application = get_wsgi_application()
