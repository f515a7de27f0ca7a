"""URL routes of the django-async-backend bench server: the two bench endpoints."""

from django.urls import path

from . import views

urlpatterns = [
    path("bench/event/<int:pk>", views.event),
    path("bench/dashboard", views.dashboard),
]
