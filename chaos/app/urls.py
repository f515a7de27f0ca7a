from django.urls import path

from chaos.app import views

urlpatterns = [
    path("read/<int:n>/", views.read),
    path("write/<int:n>/", views.write),
    path("children/<int:n>/", views.children),
]
