"""Every change tandem makes to Django and asgiref: the data.

tandem runs Django's code as it is. Where it must change behaviour, it
replaces one attribute at a narrow seam: a module's ``sync_to_async`` name,
one method of a class, the storage behind ``django.db.connections``. Each of
those replacements is a ``Patch`` in ``REGISTRY`` below, with the reason it
exists. Replacements are named by dotted strings, so this module imports
nothing of tandem; ``tandem.patches.apply`` applies them.

Groups:

* ``"core"``: applied when the ``tandem`` app is ready (``tandem.apps``).
* ``"guard"``: Django's async-safety check; applied with ``core`` and also
  by the first tandem backend class to be built (a backend can load before
  the app registry is ready).
* ``"testing"``: hooks for Django's ``TestCase``; applied only once
  ``django.test`` is imported, so production never imports it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["REGISTRY", "Patch", "table"]


@dataclass(frozen=True)
class Patch:
    """Replace ``attribute`` of ``target`` with ``replacement``.

    ``target`` is ``"module"`` or ``"module:Name"``; ``replacement`` is
    ``"module:name"`` (imported when applied). With ``wraps`` the replacement
    is called with the original and its result is set instead.
    """

    group: str
    target: str
    attribute: str
    replacement: str
    why: str
    wraps: bool = False
    # The attribute exists in some supported Django versions only.
    optional: bool = False
    # "module:predicate": applied only where the predicate returns True.
    when: str | None = None
    # A new attribute (an async twin Django lacks), set only while it lacks it.
    adds: bool = False

    def resolve_target(self) -> Any:
        """The module or object whose attribute is replaced."""
        module_name, _, name = self.target.partition(":")
        obj = importlib.import_module(module_name)
        for part in filter(None, name.split(".")):
            obj = getattr(obj, part)
        return obj

    def resolve_replacement(self) -> Any:
        """The replacement object, imported."""
        module_name, _, name = self.replacement.partition(":")
        obj = importlib.import_module(module_name)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj


_SYNC_TO_ASYNC = "sync_to_async"
_ORM = "tandem.db.routing:routed_sync_to_async"
_HANDLER = "tandem.handlers.placement:handler_sync_to_async"
_CONTRIB = "tandem.contrib.routing:contrib_sync_to_async"
_HASHES_ON_LOOP = "tandem.contrib.auth:django_hashes_on_the_loop"

REGISTRY: tuple[Patch, ...] = (
    # -- the ORM's async API (tandem.db.routing) --------------------------------
    *(
        Patch("core", module, _SYNC_TO_ASYNC, _ORM, "a* ORM methods run natively for tandem aliases")
        for module in (
            "django.db.models.query",
            "django.db.models.base",
            "django.db.models.fields.related_descriptors",
            "django.contrib.contenttypes.fields",
        )
    ),
    Patch(
        "core",
        "django.core.paginator",
        _SYNC_TO_ASYNC,
        _ORM,
        "AsyncPaginator (Django 6.0+) natively",
        optional=True,
    ),
    Patch(
        "core",
        "django.dispatch.dispatcher",
        _SYNC_TO_ASYNC,
        "tandem.handlers.placement:signal_sync_to_async",
        "Signal.asend's sync receivers join the sender's task and transaction",
    ),
    Patch(
        "core",
        "asgiref.sync:SyncToAsync",
        "__call__",
        "tandem.db.routing:block_aware_sync_to_async_call",
        "thread-sensitive sync_to_async inside an aatomic block joins it, in the bridge",
    ),
    Patch(
        "core",
        "asgiref.sync:AsyncToSync",
        "__call__",
        "tandem.db.routing:bridged_async_to_sync_call",
        "async_to_sync() inside the bridge awaits on the running loop",
    ),
    Patch(
        "core",
        "django.db:connections",
        "_connections",
        "tandem.db.scope:TaskConnections",
        "connections of tandem aliases are owned by asyncio tasks",
        wraps=True,
    ),
    # -- the ORM fast lane (tandem.db.fastlane) -------------------------------------
    Patch(
        "core",
        "django.db.models.query:QuerySet",
        "get",
        "tandem.db.fastlane.get:get",
        "get() by exact values reuses the SQL compiled for its shape (TANDEM_FAST_LANE)",
        wraps=True,
    ),
    Patch(
        "core",
        "django.db.models.query:QuerySet",
        "filter",
        "tandem.db.fastlane.filter:filter",
        "filter() by exact or compared values reuses the query built for its shape (TANDEM_FAST_LANE)",
        wraps=True,
    ),
    Patch(
        "core",
        "django.db.models.sql.compiler:SQLCompiler",
        "as_sql",
        "tandem.db.fastlane.compiled:as_sql",
        "a one-table query of simple lookups reuses the SQL compiled for its shape (TANDEM_FAST_LANE)",
        wraps=True,
    ),
    Patch(
        "core",
        "django.db.backends.base.schema:BaseDatabaseSchemaEditor",
        "__exit__",
        "tandem.db.fastlane.cache:schema_editor_exit",
        "a finished schema edit ends the fast lane's compiled shapes",
        wraps=True,
    ),
    # -- cooperative I/O in the bridge (tandem.bridge.cooperative) ------------
    *(
        Patch(
            "core",
            target,
            attribute,
            f"tandem.bridge.cooperative.sockets:{replacement}",
            f"{why}: in a bridge greenlet it waits on the loop, elsewhere unchanged",
            wraps=True,
        )
        for target, attribute, replacement, why in (
            ("socket:socket", "connect", "connect", "a socket connects"),
            ("socket:socket", "connect_ex", "connect_ex", "a socket connects"),
            ("socket:socket", "_accept", "accept", "a listening socket accepts"),
            ("socket:socket", "send", "writing", "a socket sends"),
            ("socket:socket", "sendto", "writing", "a socket sends"),
            ("socket:socket", "sendall", "sendall", "a socket sends"),
            ("socket:socket", "recv", "reading", "a socket receives"),
            ("socket:socket", "recv_into", "reading", "a socket receives"),
            ("socket:socket", "recvfrom", "reading", "a socket receives"),
            ("socket:socket", "recvfrom_into", "reading", "a socket receives"),
            ("ssl:SSLSocket", "do_handshake", "tls_handshake", "a TLS handshake"),
            ("ssl:SSLSocket", "unwrap", "tls_handshake", "a TLS shutdown"),
            ("ssl:SSLSocket", "read", "reading", "a TLS socket receives"),
            ("ssl:SSLSocket", "write", "writing", "a TLS socket sends"),
            ("ssl:SSLSocket", "send", "writing", "a TLS socket sends"),
        )
    ),
    *(
        Patch(
            "core",
            "socket",
            attribute,
            f"tandem.bridge.cooperative.names:{replacement}",
            "name resolution: in a bridge greenlet in the loop's executor, elsewhere unchanged",
            wraps=True,
        )
        for attribute, replacement in (
            ("getaddrinfo", "getaddrinfo"),
            ("gethostbyname", "gethostbyname"),
            ("gethostbyname_ex", "gethostbyname"),
        )
    ),
    Patch(
        "core",
        "time",
        "sleep",
        "tandem.bridge.cooperative.names:sleep",
        "time.sleep: in a bridge greenlet asyncio.sleep, elsewhere unchanged",
        wraps=True,
    ),
    # -- the request path (tandem.handlers) ------------------------------------
    *(
        Patch("core", module, _SYNC_TO_ASYNC, _HANDLER, why)
        for module, why in (
            ("django.utils.deprecation", "sync middleware hooks run on the loop (MiddlewareMixin)"),
            ("django.core.handlers.base", "adapted middleware, process_view/_exception, render"),
        )
    ),
    Patch(
        "core",
        "django.contrib.auth.middleware",
        _SYNC_TO_ASYNC,
        _HANDLER,
        "RemoteUserMiddleware's sync process_request (Django 5.2)",
        optional=True,
    ),
    Patch(
        "core",
        "django.core.handlers.asgi",
        _SYNC_TO_ASYNC,
        "tandem.handlers.placement:asgi_sync_to_async",
        "response.close() and request_finished on the loop, or in the request's thread if it has one",
    ),
    Patch(
        "core",
        "django.core.handlers.base:BaseHandler",
        "make_view_atomic",
        "tandem.handlers.views:make_view_atomic",
        "ATOMIC_REQUESTS for async views; sync views on the loop or in a thread",
    ),
    # -- sessions and auth (tandem.contrib) ------------------------------------
    *(
        Patch("core", module, _SYNC_TO_ASYNC, _CONTRIB, why)
        for module, why in (
            ("django.contrib.sessions.backends.base", "database session stores load and save natively"),
            ("django.contrib.sessions.backends.db", "SessionStore.asave's transaction natively"),
            ("django.contrib.auth.backends", "ModelBackend's queries natively"),
            ("django.contrib.auth.decorators", "login_required/user_passes_test tests natively"),
        )
    ),
    *(
        Patch("core", module, name, f"tandem.contrib.auth:{name}", "hashing in the bridge: in a thread")
        for module in ("django.contrib.auth.hashers", "django.contrib.auth.base_user")
        for name in ("check_password", "make_password")
    ),
    *(
        Patch(
            "core",
            module,
            "acheck_password",
            "tandem.contrib.auth:acheck_password",
            "password hashing off the loop (Django 6.0+ does it itself)",
            when=_HASHES_ON_LOOP,
        )
        for module in ("django.contrib.auth.hashers", "django.contrib.auth.base_user")
    ),
    *(
        Patch(
            "core",
            module,
            _SYNC_TO_ASYNC,
            "tandem.contrib.auth:hashing_sync_to_async",
            "Django 6.0+'s own hashing threads: tandem's pool, which leaves the loop a core",
            optional=True,
            when="tandem.contrib.auth:django_hashes_in_threads",
        )
        for module in ("django.contrib.auth.hashers", "django.contrib.auth")
    ),
    Patch(
        "core",
        "django.contrib.auth.models",
        "make_password",
        "tandem.contrib.auth:make_password",
        "password hashing stays off the loop",
    ),
    Patch(
        "core",
        "django.contrib.auth.backends:ModelBackend",
        "aauthenticate",
        "tandem.contrib.auth:aauthenticate",
        "queries natively, hashing in a thread (Django 6.0+ does it itself)",
        when=_HASHES_ON_LOOP,
    ),
    # -- the cache (tandem.cache) ----------------------------------------------
    Patch(
        "core",
        "django.core.cache.backends.base",
        _SYNC_TO_ASYNC,
        "tandem.cache.routing:cache_sync_to_async",
        "in-process, file and tandem-database caches' a* methods natively",
    ),
    # -- email (tandem.mail) ---------------------------------------------------
    Patch(
        "core",
        "django.core.mail.message:EmailMessage",
        "asend",
        "tandem.mail.message:asend",
        "async twin: natively for tandem's SMTP backend and I/O-free ones, else in a thread",
        adds=True,
    ),
    # -- async twins Django lacks (tandem.forms) -------------------------------
    *(
        Patch("core", target, name, f"tandem.forms:{name}", "async twin: validation natively", adds=True)
        for target in ("django.forms.forms:BaseForm", "django.forms.formsets:BaseFormSet")
        for name in ("ais_valid", "afull_clean")
    ),
    *(
        Patch("core", target, "asave", "tandem.forms:asave", "async twin: saving natively", adds=True)
        for target in ("django.forms.models:BaseModelForm", "django.forms.models:BaseModelFormSet")
    ),
    # -- Django's async-safety guard (tandem.db.guard) -------------------------
    Patch(
        "guard",
        "django.utils.asyncio",
        "get_running_loop",
        "tandem.db.guard:running_loop_unless_passed",
        "methods a tandem guard let pass may call stock-guarded ones",
    ),
    # -- tests (tandem.testing) ------------------------------------------------
    Patch(
        "testing",
        "django.test:TestCase",
        "_enter_atomics",
        "tandem.testing.transactions:enter_atomics",
        "every task joins the TestCase transaction",
    ),
    Patch(
        "testing",
        "django.test:TestCase",
        "_rollback_atomics",
        "tandem.testing.transactions:rollback_atomics",
        "every task joins the TestCase transaction",
    ),
    Patch(
        "testing",
        "django.test:TestCase",
        "captureOnCommitCallbacks",
        "tandem.testing.on_commit:capture_on_commit_callbacks",
        "`async with self.captureOnCommitCallbacks(execute=True)` awaits async callbacks",
    ),
    *(
        Patch(
            "testing",
            "django.test:SimpleTestCase",
            attribute,
            f"tandem.testing.databases:{attribute.lstrip('_')}",
            "tasks' wrappers refuse the databases a test did not declare, as the test thread's does",
        )
        for attribute in ("_add_databases_failures", "_remove_databases_failures")
    ),
    *(
        Patch(
            "testing",
            "django.test.utils:CaptureQueriesContext",
            attribute,
            f"tandem.testing.queries:capture_{attribute.strip('_')}",
            "assertNumQueries & co count the queries of every task, not only their wrapper's",
            wraps=True,
        )
        for attribute in ("__enter__", "__exit__")
    ),
    Patch(
        "testing",
        "django.db.backends.base.base:BaseDatabaseWrapper",
        "queries_logged",
        "tandem.testing.queries:queries_logged",
        "while a count of its alias is open, every task's wrapper logs its queries",
        wraps=True,
    ),
    Patch(
        "testing",
        "django.db.backends.base.base:BaseDatabaseWrapper",
        "connect",
        "tandem.testing.queries:connect",
        "a new connection's set-up queries stay out of counts, as Django connects before counting",
        wraps=True,
    ),
    Patch(
        "testing",
        "django.db.utils:ConnectionHandler",
        "create_connection",
        "tandem.testing.queries:create_connection",
        "a tandem wrapper's query log also feeds the counts open for its alias",
        wraps=True,
    ),
    *(
        Patch(
            "testing",
            "django.test.utils:CaptureQueriesContext",
            f"__a{name}__",
            f"tandem.testing.queries:capture_a{name}",
            "async twin: `async with self.assertNumQueries(n):`",
            adds=True,
        )
        for name in ("enter", "exit")
    ),
)


def table() -> str:
    """The registry as the Markdown table ``docs/reference.md`` shows."""
    rows = ["| group | target | attribute | replaced by | why |", "|---|---|---|---|---|"]
    for p in REGISTRY:
        target = p.target.replace(":", ".")
        why = p.why + (f" (only where `{p.when}()`)" if p.when else "")
        rows.append(f"| {p.group} | `{target}` | `{p.attribute}` | `{p.replacement}` | {why} |")
    return "\n".join(rows)
