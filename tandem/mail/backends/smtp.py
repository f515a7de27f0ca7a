"""Django's SMTP email backend, its socket I/O awaited on the loop inside the bridge.

``EmailBackend`` is Django's ``django.core.mail.backends.smtp.EmailBackend``
with one change: the ``smtplib`` classes it connects with. Those are
smtplib's own, SMTP dialogue and all, except where the socket comes from:
inside ``native()`` it is a ``StreamSocket`` (an asyncio stream whose reads
and writes are awaited), anywhere else the real socket smtplib always opens.
Settings, ``fail_silently``, the exceptions raised and the bytes on the wire
are therefore Django's and smtplib's.

Two things Django's backend does that would hold the loop get their own
answer in the bridge:

* the local host name for ``EHLO`` (``DNS_NAME.get_fqdn()``, a DNS lookup
  that can take seconds) is looked up once per process, in a thread;
* ``send_messages()`` is serialised with a ``threading.RLock``, which every
  greenlet of the loop thread would hold at once; tasks sharing one backend
  instance wait for each other here instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from django.core.mail.backends import smtp
from django.core.mail.utils import DNS_NAME

from tandem.bridge import await_, current_bridge, in_bridge
from tandem.bridge.locks import BridgeLock
from tandem.mail.streams import StreamSocket

__all__ = ["SMTP", "SMTP_SSL", "EmailBackend"]

blocking_logger = logging.getLogger("tandem.blocking")


if TYPE_CHECKING:
    # To mypy _Bridged extends smtplib.SMTP, which it is mixed into; at run
    # time it extends object.
    _SMTPBase = smtplib.SMTP
else:
    _SMTPBase = object


class _Bridged(_SMTPBase):
    """What tandem changes in an ``smtplib.SMTP`` class: in the bridge, the socket is a stream."""

    if TYPE_CHECKING:
        # Wider than typeshed's: without it, to mypy nothing after starttls()'s
        # isinstance() test could run, and it would not be checked.
        sock: socket.socket | StreamSocket | None  # type: ignore[assignment]

    def _tls_context(self) -> ssl.SSLContext | None:
        """The context of implicit TLS (SMTP_SSL), or None."""
        return None

    def _get_socket(self, host: str, port: int, timeout: Any) -> Any:
        if not in_bridge():
            if asyncio._get_running_loop() is not None:
                blocking_logger.warning(
                    "Email was sent synchronously from async code outside the bridge: the event "
                    "loop is blocked until the SMTP server answers. Use tandem.mail's asend_mail() "
                    "(or message.asend()), or run the code with tandem.native()."
                )
            return super()._get_socket(host, port, timeout)  # type: ignore[misc]  # private: not in typeshed
        # smtplib's own rules for ``timeout``: 0 is refused, and its default
        # sentinel means socket's global default (None unless set).
        if timeout is not None and not timeout:
            raise ValueError("Non-blocking socket (timeout=0) is not supported")
        if timeout is socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]  # private
            timeout = socket.getdefaulttimeout()
        # smtplib's private attributes (_print_debug, _host) are not in typeshed,
        # which also types source_address wider than smtplib uses it.
        if self.debuglevel > 0:
            self._print_debug("connect: to", (host, port), self.source_address)  # type: ignore[attr-defined]
        return StreamSocket.connect(
            (host, port),
            timeout,
            self.source_address,  # type: ignore[arg-type]
            tls=self._tls_context(),
            server_hostname=self._host,  # type: ignore[attr-defined]  # what smtplib passes to wrap_socket()
        )

    def starttls(self, *args: Any, context: ssl.SSLContext | None = None, **kwargs: Any) -> tuple[int, bytes]:
        """smtplib's ``starttls()``; on a stream, the stream itself is upgraded to TLS."""
        if not isinstance(self.sock, StreamSocket):
            return super().starttls(*args, context=context, **kwargs)  # type: ignore[call-overload]  # as given
        if args or kwargs:
            # Python 3.11's keyfile/certfile (deprecated, gone in 3.12).
            raise TypeError("starttls() in the bridge takes context= only; put the key and certificate in it")
        return super().starttls(context=_UpgradeInPlace(context))  # type: ignore[call-overload]  # duck-typed


class _UpgradeInPlace:
    """Stands in for the ``SSLContext`` smtplib's ``starttls()`` wraps its socket with.

    smtplib calls ``context.wrap_socket(sock, server_hostname=...)`` and keeps
    what it returns as its socket: here that is the same ``StreamSocket``, its
    stream now speaking TLS.
    """

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.context = context

    def wrap_socket(self, sock: StreamSocket, server_hostname: str | None = None) -> StreamSocket:
        """Do the TLS handshake on ``sock``'s stream and return ``sock``."""
        # Without a context smtplib uses this private helper of ssl's too.
        context = self.context if self.context is not None else ssl._create_stdlib_context()  # type: ignore[attr-defined]  # private
        sock.start_tls(context, server_hostname)
        return sock


# smtplib's classes as tandem's subclasses extend them, to tell a replaced one.
_SMTPLIB, _SMTPLIB_SSL = smtplib.SMTP, smtplib.SMTP_SSL


class SMTP(_Bridged, smtplib.SMTP):
    """``smtplib.SMTP`` whose socket, inside the bridge, is an asyncio stream."""


class SMTP_SSL(_Bridged, smtplib.SMTP_SSL):  # noqa: N801 - smtplib's name
    """``smtplib.SMTP_SSL`` whose TLS socket, inside the bridge, is an asyncio stream."""

    def _tls_context(self) -> ssl.SSLContext | None:
        return self.context


class EmailBackend(smtp.EmailBackend):
    """Django's SMTP backend; in the bridge its network I/O is awaited on the loop.

    A drop-in for ``django.core.mail.backends.smtp.EmailBackend``: the same
    settings and arguments (``EMAIL_HOST``, ``EMAIL_PORT``, ``EMAIL_USE_TLS``,
    ``EMAIL_USE_SSL``, ``EMAIL_HOST_USER``/``PASSWORD``, ``EMAIL_TIMEOUT``,
    ``EMAIL_SSL_CERTFILE``/``KEYFILE``; on Django 6.1 also ``MAILERS``
    ``OPTIONS``), the same results and exceptions. Outside the bridge (a
    thread, a management command, WSGI) it is Django's backend exactly.
    A connection opened in the bridge must be used in the bridge, on the same
    event loop; one opened outside it, outside it. On the loop thread but
    outside the bridge (``send_mail()`` called straight from async code) it
    blocks, as Django's does, and says so on the ``tandem.blocking`` logger.
    """

    # tandem.mail's async twins may run it on the loop, in the bridge.
    tandem_native = True

    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        """tandem's ``SMTP_SSL`` with ``use_ssl``, else its ``SMTP``.

        Like Django's, it looks ``smtplib``'s class up on each call: where a
        test has replaced it (``mock.patch("smtplib.SMTP")`` to stay
        offline), the replacement is used, as with Django's backend.
        """
        if self.use_ssl:
            return SMTP_SSL if smtplib.SMTP_SSL is _SMTPLIB_SSL else smtplib.SMTP_SSL
        return SMTP if smtplib.SMTP is _SMTPLIB else smtplib.SMTP

    def open(self) -> bool | None:
        """Django's ``open()``, after the one-time host name lookup, in the bridge done in a thread."""
        if in_bridge():
            lookup = _fqdn_lookup()
            if not lookup.done():
                with contextlib.suppress(Exception):  # then Django's own lookup raises it
                    await_(asyncio.wrap_future(lookup))
        return super().open()

    def send_messages(self, email_messages: Sequence[Any]) -> int:
        """Django's ``send_messages()``, one greenlet or thread at a time per backend instance."""
        with self._send_lock:
            return super().send_messages(email_messages)

    @cached_property
    def _send_lock(self) -> _SendLock:
        # Two threads may each build one on first use; Django's RLock, taken
        # inside, still keeps them apart, as it always has.
        return _SendLock()


class _SendLock:
    """A re-entrant lock held by one greenlet or thread; in the bridge, waiters await.

    Django's ``send_messages()`` takes a ``threading.RLock``. The bridge
    greenlets of all tasks on the loop share one thread, so that lock lets
    two tasks that share a backend instance interleave their SMTP commands on
    one connection. This one is owned by a bridge greenlet, or outside the
    bridge by a thread (so threads exclude each other too).
    """

    def __init__(self) -> None:
        self._lock = BridgeLock()
        self._owner: Any = None
        self._depth = 0

    def __enter__(self) -> None:
        me = current_bridge() or threading.get_ident()
        if self._owner != me:  # not `is not`: each get_ident() is a new int
            self._lock.acquire()
            self._owner = me
        self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if not self._depth:
            self._owner = None
            self._lock.release()


# The local host name Django sends with EHLO is computed once per process by
# socket.getfqdn(), a DNS lookup that Django's own comment says "can take a
# couple of seconds": on the loop that would stall every task. The first
# bridged open() starts it in a thread; every task waits for that one lookup.
_fqdn: concurrent.futures.Future | None = None
_fqdn_guard = threading.Lock()


def _fqdn_lookup() -> concurrent.futures.Future:
    """The one lookup of ``DNS_NAME``, started in a thread on first call."""
    global _fqdn
    if _fqdn is None:
        with _fqdn_guard:
            if _fqdn is None:
                _fqdn = concurrent.futures.Future()
                # Running: a waiting task that is cancelled cannot cancel it.
                _fqdn.set_running_or_notify_cancel()
                threading.Thread(target=_look_up_fqdn, args=(_fqdn,), name="tandem-fqdn", daemon=True).start()
    return _fqdn


def _look_up_fqdn(future: concurrent.futures.Future) -> None:
    try:
        future.set_result(DNS_NAME.get_fqdn())
    except BaseException as exc:
        future.set_exception(exc)
