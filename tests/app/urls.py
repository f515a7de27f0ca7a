from django.urls import path

from tests.app import views

urlpatterns = [
    path("authors/<int:pk>/", views.author_detail),
    path("create/", views.create_author),
    path("create-non-atomic/", views.create_author_non_atomic),
    path("fail/", views.create_then_fail),
]
