from django.urls import path

from tests.app import views

urlpatterns = [
    path("authors/<int:pk>/", views.author_detail),
    path("create/", views.create_author),
    path("create-non-atomic/", views.create_author_non_atomic),
    path("fail/", views.create_then_fail),
    path("time-out/", views.create_then_time_out),
]

urlpatterns += [
    path("me/async/", views.me_async),
    path("me/sync/", views.me_sync),
    path("sync/authors/", views.authors_sync),
    path("sync/on-loop/", views.authors_on_loop),
    path("sync/in-thread/", views.authors_in_thread),
    path("sync/slow/", views.slow_sync),
    path("template/", views.template_view),
    path("error/lookup/", views.lookup_error),
    path("error/value/", views.value_error),
    path("stream/async/", views.stream_async),
    path("stream/sync/", views.stream_sync),
    path("hang/", views.hang_in_query),
]

urlpatterns += [path("library/", views.library_async)]

urlpatterns += [path("sync/cbv-on-loop/", views.AuthorsOnLoopView.as_view())]

urlpatterns += [
    path("cache/sync/", views.cached_sync),
    path("cache/async/", views.cached_async),
    path("cache/fragment/", views.fragment),
]
