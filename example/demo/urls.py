"""URL routes of the onsale demo."""

from django.urls import path
from shop import bench, dashboard, views

urlpatterns = [
    path("", views.event_list, name="event-list"),
    path("events/<int:pk>/", views.event_detail, name="event-detail"),
    path("events/<int:pk>/availability/", views.availability, name="availability"),
    path("events/<int:pk>/buy/", views.buy, name="buy"),
    path("orders/<int:pk>/", views.order_detail, name="order-detail"),
    path("login/", views.login, name="login"),
    path("logout/", views.logout, name="logout"),
    path("mail/", views.mailbox, name="mailbox"),
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("api/dashboard/", dashboard.dashboard_json, name="api-dashboard"),
    # What bench/http.py measures (JSON; sync twins for WSGI servers).
    path("bench/event/<int:pk>", bench.event),
    path("bench/me/event/<int:pk>", bench.me_event),
    path("bench/dashboard", bench.dashboard),
    path("bench/page", bench.page),
    path("bench/sync/event/<int:pk>", bench.sync_event),
    path("bench/sync/me/event/<int:pk>", bench.sync_me_event),
    path("bench/sync/dashboard", bench.sync_dashboard),
    path("bench/sync/page", bench.sync_page),
]
