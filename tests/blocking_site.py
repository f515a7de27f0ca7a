"""A one-module Django project for the blocking detector under uvicorn.

Settings, URLs and the ASGI application in one place, with Django's default
logging configuration (no LOGGING setting).
"""

import threading

from django.http import HttpResponse
from django.urls import path

from tandem.handlers import on_loop

SECRET_KEY = "tandem-blocking-site"
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["tandem"]
ROOT_URLCONF = __name__
DATABASES = {}


@on_loop
def hog(request):
    """A sync view on the loop that blocks it (a lock's wait: time.sleep would wait on the loop)."""
    threading.Event().wait(0.2)
    return HttpResponse("done")


urlpatterns = [path("hog/", hog)]


_django_application = None


async def application(scope, receive, send):
    """The ASGI entry point; Django's application, built on first use."""
    global _django_application
    if _django_application is None:
        from django.core.asgi import get_asgi_application

        _django_application = get_asgi_application()
    await _django_application(scope, receive, send)
