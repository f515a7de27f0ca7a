"""URL routes of the tandem demo."""

from django.urls import path
from shop import views

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("api/stats/", views.api_stats, name="api-stats"),
    path("events/<int:pk>/", views.event_detail, name="event-detail"),
    path("events/<int:pk>/buy/", views.buy, name="buy"),
]
