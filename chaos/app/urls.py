from django.urls import path

from chaos.app import views

urlpatterns = [
    path("read/<int:n>/", views.read),
    path("steady_read/<int:n>/", views.steady_read),
    path("write/<int:n>/", views.write),
    path("children/<int:n>/", views.children),
    path("stages/<int:n>/", views.stages),
    path("on/<str:alias>/<int:n>/", views.on_alias),
    path("slow/<str:alias>/", views.slow),
    path("session/<str:kind>/<int:n>/", views.session),
]
