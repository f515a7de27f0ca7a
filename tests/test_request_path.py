"""Django's ASGI request path on the loop: middleware, views, sessions, auth.

Every test drives Django's real ``ASGIHandler`` (through httpx's ASGI
transport, or by hand where the client's behaviour matters), against the
database under test.
"""

import asyncio
import threading
from contextlib import asynccontextmanager

import httpx
import pytest
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.core.handlers.asgi import ASGIHandler
from django.db import connections
from django.test import override_settings

from tests.app import middleware as recording
from tests.app import views
from tests.app.models import Author
from tests.watchdog import LoopWatch

pytestmark = pytest.mark.django_db(transaction=True)

STARTPROJECT = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
RECORDING = ["tests.app.middleware.RecordingMiddleware"]
FAST_HASHER = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def clean_records():
    recording.seen.clear()
    views.view_seen.clear()
    views.cancelled.clear()


@asynccontextmanager
async def serve(middleware=(), **settings):
    """An httpx client on a fresh ASGIHandler, all under ``settings``."""
    with override_settings(MIDDLEWARE=list(middleware), **settings):
        transport = httpx.ASGITransport(app=ASGIHandler())
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def logged_in_cookie(username="ada", password="secret") -> str:
    """A user and a database session that has them logged in (sync code)."""
    user = User.objects.create_user(username, password=password)
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


async def in_a_thread(fn, *args, **kwargs):
    """Run sync setup code in a thread that closes its connections after."""

    def run():
        try:
            return fn(*args, **kwargs)
        finally:
            connections.close_all()

    return await asyncio.to_thread(run)


# -- where the hooks run ---------------------------------------------------------


async def test_middleware_hooks_run_on_the_loop_in_the_bridge():
    loop_thread = threading.get_ident()
    async with serve([*RECORDING, "tests.app.middleware.sync_only_middleware"]) as client:
        assert (await client.get("/template/")).status_code == 200
    hooks = ("process_request", "process_view", "process_template_response", "process_response", "sync_only")
    for hook in hooks:
        assert recording.seen[hook] == [(loop_thread, True)], hook


async def test_threads_request_path_is_stock_django():
    loop_thread = threading.get_ident()
    async with serve(RECORDING, TANDEM_REQUEST_PATH="threads") as client:
        assert (await client.get("/template/")).status_code == 200
    for hook in ("process_request", "process_view", "process_template_response", "process_response"):
        (thread, bridged), *_ = recording.seen[hook]
        assert thread != loop_thread and not bridged, hook


async def test_middleware_marked_or_listed_stays_in_a_thread():
    loop_thread = threading.get_ident()
    stack = [*RECORDING, "tests.app.middleware.ThreadedMiddleware", "tests.app.middleware.ListedMiddleware"]
    async with serve(stack, TANDEM_THREAD_MIDDLEWARE=["tests.app.middleware.ListedMiddleware"]) as client:
        assert (await client.get("/authors/0/")).status_code == 404
    assert recording.seen["process_request"] == [(loop_thread, True)]
    assert recording.seen["threaded"][0][0] != loop_thread
    assert recording.seen["listed"][0][0] != loop_thread


async def test_template_response_renders_its_queries_natively():
    await Author.objects.acreate(name="Mary")
    async with serve(RECORDING) as client:
        response = await client.get("/template/")
    assert response.text == "1 authors"


async def test_process_exception_runs_natively_and_answers():
    loop_thread = threading.get_ident()
    async with serve(RECORDING) as client:
        response = await client.get("/error/lookup/")
    assert (response.status_code, response.text) == (418, "handled by middleware")
    assert recording.seen["process_exception"] == [(loop_thread, True)]


async def test_unhandled_exception_is_a_logged_500(caplog):
    async with serve(RECORDING) as client:
        with caplog.at_level("ERROR", logger="django.request"):
            response = await client.get("/error/value/")
    assert response.status_code == 500
    assert any("Internal Server Error: /error/value/" in r.getMessage() for r in caplog.records)
    assert recording.seen["process_response"]  # the chain still saw the 500


@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_streaming_responses(kind):
    async with serve(RECORDING) as client:
        response = await client.get(f"/stream/{kind}/")
    assert response.text == "part0;part1;part2;"


# -- sync views --------------------------------------------------------------------


async def test_sync_views_are_served_in_a_thread_by_default():
    await Author.objects.acreate(name="Ann")
    loop_thread = threading.get_ident()
    async with serve() as client:
        body = (await client.get("/sync/authors/")).json()
    assert body["count"] == 1 and body["thread"] != loop_thread and not body["bridged"]


async def test_sync_views_natively_when_asked():
    await Author.objects.acreate(name="Ann")
    loop_thread = threading.get_ident()
    async with serve(TANDEM_SYNC_VIEWS="native") as client:
        body = (await client.get("/sync/authors/")).json()
        in_thread = (await client.get("/sync/in-thread/")).json()
    assert body == {"count": 1, "thread": loop_thread, "bridged": True}
    assert in_thread["count"] == 1 and in_thread["thread"] != loop_thread


async def test_on_loop_decorator_wins_over_the_default():
    loop_thread = threading.get_ident()
    async with serve() as client:
        body = (await client.get("/sync/on-loop/")).json()
    assert body == {"count": 0, "thread": loop_thread, "bridged": True}


async def test_a_class_based_view_is_marked_on_its_class():
    loop_thread = threading.get_ident()
    async with serve() as client:
        body = (await client.get("/sync/cbv-on-loop/")).json()
    assert body == {"count": 0, "thread": loop_thread, "bridged": True}


async def test_atomic_requests_wrap_native_sync_views():
    async with serve(TANDEM_SYNC_VIEWS="native") as client:
        with override_settings():
            connections.settings["default"]["ATOMIC_REQUESTS"] = True
            try:
                body = (await client.get("/sync/authors/")).json()
            finally:
                connections.settings["default"]["ATOMIC_REQUESTS"] = False
    assert body["bridged"]


# -- sessions and auth --------------------------------------------------------------


@override_settings(PASSWORD_HASHERS=FAST_HASHER)
@pytest.mark.parametrize("view", ["async", "sync"])
async def test_logged_in_user_and_session_through_startproject_stack(view):
    cookie = await in_a_thread(logged_in_cookie)
    loop_thread = threading.get_ident()
    async with serve(STARTPROJECT, TANDEM_SYNC_VIEWS="native") as client:
        client.cookies["sessionid"] = cookie
        first = (await client.get(f"/me/{view}/")).json()
        second = (await client.get(f"/me/{view}/")).json()
    assert (first["user"], first["hits"], second["hits"]) == ("ada", 1, 2)
    assert first["thread"] == loop_thread and first["bridged"] == (view == "sync")


@override_settings(PASSWORD_HASHERS=FAST_HASHER)
async def test_full_stack_with_a_logged_in_session_starts_no_thread(monkeypatch):
    cookie = await in_a_thread(logged_in_cookie)
    started = []
    stock_start = threading.Thread.start

    def counting_start(thread):
        # A database connection's own worker (SQLite, MySQL) is per
        # connection, not per request: the pool may open one more.
        if not thread.name.startswith("tandem-db"):
            started.append(thread.name)
        return stock_start(thread)

    async with serve(STARTPROJECT, TANDEM_SYNC_VIEWS="native") as client:
        client.cookies["sessionid"] = cookie

        async def hit(n):
            for _ in range(n):
                response = await client.get("/me/async/" if _ % 2 else "/me/sync/")
                assert response.status_code == 200 and response.json()["user"] == "ada"

        await asyncio.gather(*(hit(5) for _ in range(10)))  # warm up
        monkeypatch.setattr(threading.Thread, "start", counting_start)
        await asyncio.gather(*(hit(50) for _ in range(10)))  # 500 requests
    assert started == []


@override_settings(PASSWORD_HASHERS=FAST_HASHER)
async def test_auth_functions_natively():
    from django.contrib.auth import aauthenticate, alogin, alogout
    from django.http import HttpRequest

    await in_a_thread(User.objects.create_user, "grace", password="pw")
    request = HttpRequest()
    request.session = SessionStore()
    assert await aauthenticate(request, username="grace", password="wrong") is None
    assert await aauthenticate(request, username="nobody", password="pw") is None
    user = await aauthenticate(request, username="grace", password="pw")
    assert user.username == "grace"
    await alogin(request, user)
    await request.session.asave()
    key = request.session.session_key
    assert await SessionStore(key).aget(SESSION_KEY) == str(user.pk)
    await alogout(request)
    assert not await SessionStore().aexists(key)


@override_settings(PASSWORD_HASHERS=FAST_HASHER)
async def test_backend_permission_queries_run_natively():
    from tests import recorder

    user = await in_a_thread(User.objects.create_user, "perm", password="pw")
    recorder.log.clear()
    assert await user.aget_all_permissions() == set()
    assert not await user.ahas_perm("app.anything")
    loop_thread = threading.get_ident()
    assert recorder.log and all(q.thread == loop_thread and q.bridged for q in recorder.log), recorder.log


async def test_twenty_logins_leave_the_loop_free():
    """Real PBKDF2 hashing (100+ ms each) runs in threads: no loop gap > 50 ms."""
    await in_a_thread(User.objects.create_user, "linus", password="correct horse")
    from django.contrib.auth import aauthenticate

    async def login(nth, password, username="linus"):
        # Requests arrive over time, not in one instant: 20 logins started in
        # the same loop iteration would run their 20 queries' Python (which is
        # loop work, and slow under coverage) back to back before the ticker
        # gets a turn. 1 ms apart, all 20 are still in flight together (a hash
        # takes 100+ ms), which is what this test is about.
        await asyncio.sleep(nth / 1000)
        return await aauthenticate(username=username, password=password)

    # Warm up first: the first logins of a process import modules and open
    # the pool's connections, which is not what this test is about.
    await asyncio.gather(*(login(0, "correct horse") for _ in range(20)))
    await login(0, "correct horse", username="ghost")
    async with LoopWatch() as watch:  # the longest one step held the loop; no GC pauses
        users = await asyncio.gather(
            *(login(n, "correct horse") for n in range(10)),
            *(login(n, "correct horse", username="ghost") for n in range(10, 15)),
            *(login(n, "wrong") for n in range(15, 20)),
        )
    assert [u is not None for u in users] == [True] * 10 + [False] * 10
    assert watch.longest < 0.05, f"the loop stalled for {watch.longest * 1000:.0f} ms"
