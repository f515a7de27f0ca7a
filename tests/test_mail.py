"""tandem.mail against a real SMTP server on loopback (aiosmtpd, in its own thread).

No mocks: every test talks SMTP over TCP. Where a failure is involved, the
same send also runs through Django's stock SMTP backend in a thread, and the
two outcomes (result, or exception class and message) must be identical.
"""

import asyncio
import contextlib
import gc
import smtplib
import socket
import ssl
import subprocess
import sys
import threading
import time
import warnings
from email import message_from_bytes, policy

import django
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from asgiref.sync import sync_to_async
from django.core import mail
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mail

import tandem
from tandem.mail import amail_admins, amail_managers, asend_mail, asend_mass_mail
from tandem.mail.routing import runs_natively
from tandem.mail.streams import StreamSocket
from tests.watchdog import LoopWatch

TANDEM = "tandem.mail.backends.smtp.EmailBackend"
DJANGO = "django.core.mail.backends.smtp.EmailBackend"
# Django 6.1 wants ADMINS/MANAGERS as address strings, 5.2 as (name, address) pairs.
MAILERS = django.VERSION >= (6, 1)

# Django 6.1 deprecates the EMAIL_* settings and the fail_silently, auth_*
# and connection arguments (for MAILERS and using=), which these tests use so
# that they run on 5.2 as well. test_mailers_and_using checks that the MAILERS
# way stays free of warnings through tandem.
pytestmark = pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")


def people(*addresses):
    return list(addresses) if MAILERS else [(a.split("@")[0], a) for a in addresses]


# -- a real SMTP server ----------------------------------------------------------


class Recorder:
    """An aiosmtpd handler that keeps what it is handed, optionally after a delay."""

    def __init__(self):
        self.envelopes = []
        self.peers = []
        self.delay = 0.0

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook
        if self.delay:
            await asyncio.sleep(self.delay)
        self.envelopes.append(envelope)
        self.peers.append(session.peer)
        return "250 Message accepted for delivery"

    def messages(self):
        return [message_from_bytes(e.content, policy=policy.default) for e in self.envelopes]


class Server:
    def __init__(self, port, handler):
        self.port = port
        self.handler = handler


def free_port():
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


@contextlib.contextmanager
def smtp_server(**options):
    """An aiosmtpd server on 127.0.0.1 in its own thread and event loop."""
    handler = Recorder()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield Server(controller.port, handler)
    finally:
        controller.stop()


@contextlib.contextmanager
def silent_server():
    """A TCP port on loopback whose connections are accepted (by the kernel) and never answered."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


@pytest.fixture(scope="session")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert path, key path)."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"),
            *("-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return str(cert), str(key)


@pytest.fixture
def server_tls(certificate):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    return context


@pytest.fixture
def trusted(certificate, monkeypatch):
    """Clients trust the test certificate: ssl.create_default_context() reads SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", certificate[0])


@pytest.fixture
def smtp(settings):
    """A plain SMTP server, and settings that send to it with tandem's backend."""
    with smtp_server() as server:
        use(settings, server.port)
        yield server


def use(settings, port, backend=TANDEM, **extra):
    settings.EMAIL_BACKEND = backend
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_TIMEOUT = 5
    for name, value in extra.items():
        setattr(settings, name, value)


# -- helpers ---------------------------------------------------------------------


async def in_a_thread(fn, *args, **kwargs):
    return await sync_to_async(fn, thread_sensitive=False)(*args, **kwargs)


def outcome(fn, *args, **kwargs):
    """What calling ``fn`` gives: ("returned", value), or the exception's class and message."""
    try:
        return ("returned", fn(*args, **kwargs))
    except Exception as exc:
        return (type(exc), str(exc))


async def stock_and_tandem(settings, fn, *args, **kwargs):
    """``fn``'s outcome with Django's backend in a thread, then with tandem's in the bridge."""
    settings.EMAIL_BACKEND = DJANGO
    stock = await in_a_thread(outcome, fn, *args, **kwargs)
    settings.EMAIL_BACKEND = TANDEM
    ours = await tandem.native(outcome)(fn, *args, **kwargs)
    return stock, ours


def send_one(fail_silently=False):
    return send_mail("Hello", "Body", "from@example.com", ["to@example.com"], fail_silently=fail_silently)


class Ticker:
    """Counts loop turns of 5 ms; ``longest``: the longest one callback held the loop.

    (``tests.watchdog.LoopWatch``: a gap between two turns would also count
    a turn that ran many ready tasks, and a garbage collection.)
    """

    async def __aenter__(self):
        self.ticks = 0
        self._watch = await LoopWatch().__aenter__()
        self._task = asyncio.create_task(self._tick())
        await asyncio.sleep(0)
        return self

    @property
    def longest(self) -> float:
        return self._watch.longest

    async def _tick(self):
        while True:
            await asyncio.sleep(0.005)
            self.ticks += 1

    async def __aexit__(self, *exc_info):
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        await self._watch.__aexit__(*exc_info)


# -- the twins deliver -----------------------------------------------------------


async def test_asend_mail_delivers(smtp):
    sent = await asend_mail("Hello", "Body text", "from@example.com", ["to@example.com", "cc@example.com"])
    assert sent == 1
    [envelope] = smtp.handler.envelopes
    assert envelope.mail_from == "from@example.com"
    assert envelope.rcpt_tos == ["to@example.com", "cc@example.com"]
    [message] = smtp.handler.messages()
    assert message["Subject"] == "Hello"
    assert message["To"] == "to@example.com, cc@example.com"
    assert message.get_content().strip() == "Body text"


async def test_asend_mail_with_html_and_defaults(smtp, settings):
    settings.DEFAULT_FROM_EMAIL = "noreply@example.com"
    sent = await asend_mail("Hi", "Plain", None, ["to@example.com"], html_message="<p>Rich</p>")
    assert sent == 1
    [message] = smtp.handler.messages()
    assert message["From"] == "noreply@example.com"
    assert message.get_body(("html",)).get_content().strip() == "<p>Rich</p>"


async def test_asend_mass_mail_uses_one_connection(smtp):
    sent = await asend_mass_mail(
        [
            ("First", "One", "a@example.com", ["x@example.com"]),
            ("Second", "Two", "b@example.com", ["y@example.com", "z@example.com"]),
            ("Nobody", "Skipped", "c@example.com", []),
        ]
    )
    assert sent == 2
    assert [m["Subject"] for m in smtp.handler.messages()] == ["First", "Second"]
    assert [e.rcpt_tos for e in smtp.handler.envelopes] == [
        ["x@example.com"],
        ["y@example.com", "z@example.com"],
    ]
    assert len(set(smtp.handler.peers)) == 1  # one connection, one client port


async def test_amail_admins_and_amail_managers(smtp, settings):
    settings.ADMINS = people("root@example.com", "ops@example.com")
    settings.MANAGERS = people("boss@example.com")
    settings.SERVER_EMAIL = "server@example.com"
    assert await amail_admins("Disk full", "Help") is None
    assert await amail_managers("Report", "All good", html_message="<b>All good</b>") is None
    admins, managers = smtp.handler.envelopes
    assert (admins.mail_from, admins.rcpt_tos) == (
        "server@example.com",
        ["root@example.com", "ops@example.com"],
    )
    assert (managers.mail_from, managers.rcpt_tos) == ("server@example.com", ["boss@example.com"])
    assert [m["Subject"] for m in smtp.handler.messages()] == ["[Django] Disk full", "[Django] Report"]


async def test_amail_admins_without_admins_sends_nothing(smtp, settings):
    settings.ADMINS = []
    await amail_admins("Disk full", "Help")
    assert smtp.handler.envelopes == []


async def test_message_asend(smtp):
    message = EmailMessage(
        "Subject", "Body", "from@example.com", ["to@example.com"], bcc=["hidden@example.com"]
    )
    assert await message.asend() == 1
    alternative = EmailMultiAlternatives("Alt", "Text", "from@example.com", ["to@example.com"])
    alternative.attach_alternative("<p>Html</p>", "text/html")
    assert await alternative.asend() == 1
    assert await EmailMessage("Nobody", "Body", "from@example.com", []).asend() == 0
    first, second = smtp.handler.envelopes
    assert first.rcpt_tos == ["to@example.com", "hidden@example.com"]
    assert "hidden@example.com" not in first.content.decode()  # Bcc is not a header
    assert second.rcpt_tos == ["to@example.com"]


async def test_the_twins_show_django_signatures():
    import inspect

    assert inspect.signature(asend_mail) == inspect.signature(mail.send_mail)
    assert inspect.signature(amail_admins) == inspect.signature(mail.mail_admins)


@pytest.mark.skipif(not MAILERS, reason="MAILERS and using= are Django 6.1+")
async def test_mailers_and_using(settings):
    with smtp_server() as server:
        settings.MAILERS = {
            "default": {"BACKEND": TANDEM, "OPTIONS": {"host": "127.0.0.1", "port": server.port}},
            "local": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"},
        }
        settings.ADMINS = ["root@example.com"]
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the MAILERS way is warning-free, through tandem too
            assert await asend_mail("Default", "Body", "a@example.com", ["b@example.com"]) == 1
            assert await EmailMessage("Asend", "Body", "a@example.com", ["b@example.com"]).asend() == 1
            await amail_admins("Admins", "Body")
            assert await asend_mail("Local", "Body", "a@example.com", ["b@example.com"], using="local") == 1
            assert (
                await EmailMessage("Local 2", "Body", "a@example.com", ["b@example.com"]).asend(using="local")
                == 1
            )
    assert [m["Subject"] for m in server.handler.messages()] == ["Default", "Asend", "[Django] Admins"]
    assert [m.subject for m in mail.outbox] == ["Local", "Local 2"]


# -- where the work runs ---------------------------------------------------------


async def test_sync_send_mail_inside_native_awaits_on_the_loop(smtp):
    smtp.handler.delay = 0.2  # the server takes 0.2 s to accept the message
    seen = {}

    def send():
        connection = mail.get_connection()
        with connection:  # open() ... close()
            seen["socket"] = type(connection.connection.sock)
            seen["thread"] = threading.get_ident()
            return connection.send_messages([EmailMessage("Hi", "Body", "a@example.com", ["b@example.com"])])

    async with Ticker() as ticker:
        sent = await tandem.native(send)()
    assert sent == 1
    assert seen == {"socket": StreamSocket, "thread": threading.get_ident()}
    # While the server made it wait, the loop ran: the wait was an await.
    assert ticker.ticks >= 20, ticker.ticks


async def test_outside_the_bridge_it_is_djangos_backend(smtp):
    seen = {}

    def send():
        connection = mail.get_connection()
        with connection:
            seen["socket"] = type(connection.connection.sock)
            return connection.send_messages([EmailMessage("Hi", "Body", "a@example.com", ["b@example.com"])])

    assert await in_a_thread(send) == 1
    assert seen["socket"] is socket.socket
    assert len(smtp.handler.envelopes) == 1


async def test_djangos_own_smtp_backend_runs_in_a_thread(smtp, settings):
    settings.EMAIL_BACKEND = DJANGO
    smtp.handler.delay = 0.2
    async with Ticker() as ticker:
        assert await asend_mail("Hello", "Body", "a@example.com", ["b@example.com"]) == 1
        assert await EmailMessage("Again", "Body", "a@example.com", ["b@example.com"]).asend() == 1
    assert ticker.ticks >= 40, ticker.ticks  # not blocked: the blocking I/O was in a thread
    assert len(smtp.handler.envelopes) == 2


async def test_backends_without_network_io_run_natively(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert await asend_mail("Local", "Body", "a@example.com", ["b@example.com"]) == 1
    assert [m.subject for m in mail.outbox] == ["Local"]
    from django.core.mail.backends import base, console, dummy, filebased, locmem, smtp

    from tandem.mail.backends.smtp import EmailBackend

    class Mine(EmailBackend):
        pass

    class Promised(base.BaseEmailBackend):
        tandem_native = True  # its I/O awaits in the bridge, it says

    assert runs_natively(locmem.EmailBackend) and runs_natively(console.EmailBackend)
    assert runs_natively(dummy.EmailBackend) and runs_natively(EmailBackend)
    assert runs_natively(Mine) and runs_natively(Promised)
    assert not runs_natively(filebased.EmailBackend) and not runs_natively(smtp.EmailBackend)
    assert not runs_natively(base.BaseEmailBackend)


async def test_sending_synchronously_on_the_loop_blocks_and_says_so(smtp, caplog):
    sent = send_mail("Blocking", "Body", "a@example.com", ["b@example.com"])  # no await, no bridge
    assert sent == 1
    [record] = [r for r in caplog.records if r.name == "tandem.blocking"]
    assert "outside the bridge" in record.getMessage()


async def test_tasks_sharing_one_backend_take_turns(smtp):
    # Django's backend serialises send_messages() with an RLock, which all
    # greenlets of the loop thread hold at once: tandem's backend adds a lock
    # the tasks await, or their SMTP commands would interleave.
    smtp.handler.delay = 0.01
    connection = mail.get_connection()
    messages = [EmailMessage(f"Shared {n}", "Body", "a@example.com", ["b@example.com"]) for n in range(10)]
    results = await asyncio.gather(*(tandem.native(connection.send_messages)([m]) for m in messages))
    assert results == [1] * 10
    assert sorted(m["Subject"] for m in smtp.handler.messages()) == sorted(m.subject for m in messages)


async def test_without_email_timeout_it_waits_as_long_as_it_takes(smtp, settings):
    settings.EMAIL_TIMEOUT = None  # Django then leaves smtplib's default: socket's global one
    smtp.handler.delay = 0.1
    assert await asend_mail("Patient", "Body", "a@example.com", ["b@example.com"]) == 1


async def test_a_bridged_connection_is_for_the_bridge(smtp):
    connection = mail.get_connection()
    await tandem.native(connection.open)()
    sock = connection.connection.sock
    with pytest.raises(tandem.OutsideBridgeError):
        connection.connection.noop()  # async code, not native(): no blocking, an error
    await tandem.native(connection.close)()
    sock.close()  # closing twice, or from outside, is harmless


async def test_a_cancelled_send_stops_and_closes_its_connection(smtp):
    smtp.handler.delay = 0.3  # the server sits on the message
    task = asyncio.create_task(asend_mail("Cancelled", "Body", "a@example.com", ["b@example.com"]))
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Django's backend closed the connection on the way out (QUIT, answered
    # once the server is done): nothing is left open for the loop to warn about.
    gc.collect()
    assert await asend_mail("Next", "Body", "a@example.com", ["b@example.com"]) == 1


# -- TLS and AUTH ----------------------------------------------------------------


async def test_starttls(settings, server_tls, trusted):
    with smtp_server(tls_context=server_tls, require_starttls=True) as server:
        use(settings, server.port, EMAIL_USE_TLS=True)
        assert await asend_mail("Secret", "Body", "a@example.com", ["b@example.com"]) == 1
        seen = {}

        def send():
            connection = mail.get_connection()
            with connection:
                seen["socket"] = type(connection.connection.sock)
                seen["cipher"] = connection.connection.sock._writer.get_extra_info("cipher")
                return connection.send_messages(
                    [EmailMessage("Two", "Body", "a@example.com", ["b@example.com"])]
                )

        assert await tandem.native(send)() == 1
    assert seen["socket"] is StreamSocket and seen["cipher"]
    assert [m["Subject"] for m in server.handler.messages()] == ["Secret", "Two"]


async def test_without_starttls_a_server_that_requires_it_refuses(settings, server_tls):
    with smtp_server(tls_context=server_tls, require_starttls=True) as server:
        use(settings, server.port)
        stock, ours = await stock_and_tandem(settings, send_one)
    assert stock == ours
    assert stock[0] is smtplib.SMTPSenderRefused


async def test_starttls_outside_the_bridge_is_smtplibs(settings, server_tls, trusted):
    with smtp_server(tls_context=server_tls, require_starttls=True) as server:
        use(settings, server.port, EMAIL_USE_TLS=True)
        seen = {}

        def send():
            connection = mail.get_connection()
            with connection:
                seen["socket"] = type(connection.connection.sock)
                return connection.send_messages(
                    [EmailMessage("Thread", "Body", "a@example.com", ["b@example.com"])]
                )

        assert await in_a_thread(send) == 1
    assert seen["socket"] is ssl.SSLSocket
    assert [m["Subject"] for m in server.handler.messages()] == ["Thread"]


async def test_implicit_tls(settings, server_tls, trusted):
    with smtp_server(ssl_context=server_tls) as server:
        use(settings, server.port, EMAIL_USE_SSL=True)
        assert await asend_mail("Over TLS", "Body", "a@example.com", ["b@example.com"]) == 1
        assert await EmailMessage("Again", "Body", "a@example.com", ["b@example.com"]).asend() == 1
    assert [m["Subject"] for m in server.handler.messages()] == ["Over TLS", "Again"]


@pytest.mark.parametrize("setting", ["EMAIL_USE_TLS", "EMAIL_USE_SSL"])
async def test_an_untrusted_certificate_fails_as_with_django(settings, server_tls, setting):
    options = {"ssl_context": server_tls} if setting == "EMAIL_USE_SSL" else {"tls_context": server_tls}
    with smtp_server(**options) as server:
        use(settings, server.port, **{setting: True})
        stock, ours = await stock_and_tandem(settings, send_one)
        silent = await stock_and_tandem(settings, send_one, fail_silently=True)
    assert stock == ours
    assert stock[0] is ssl.SSLCertVerificationError
    assert silent == (("returned", 0), ("returned", 0))
    assert server.handler.envelopes == []


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data == (b"alice", b"s3cret")
    return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 235 or 535


async def test_auth(settings):
    with smtp_server(authenticator=authenticator, auth_require_tls=False) as server:
        use(settings, server.port, EMAIL_HOST_USER="alice", EMAIL_HOST_PASSWORD="s3cret")
        assert await asend_mail("Logged in", "Body", "a@example.com", ["b@example.com"]) == 1
        # auth_user/auth_password arguments override the settings, as in Django.
        refused = await outcome_of(
            asend_mail("No", "Body", "a@example.com", ["b@example.com"], auth_password="nope")
        )
    assert refused[0] is smtplib.SMTPAuthenticationError
    assert [m["Subject"] for m in server.handler.messages()] == ["Logged in"]


async def outcome_of(awaitable):
    try:
        return ("returned", await awaitable)
    except Exception as exc:
        return (type(exc), str(exc))


async def test_refused_auth_fails_as_with_django(settings):
    with smtp_server(authenticator=authenticator, auth_require_tls=False) as server:
        use(settings, server.port, EMAIL_HOST_USER="alice", EMAIL_HOST_PASSWORD="wrong")
        stock, ours = await stock_and_tandem(settings, send_one)
        silent = await stock_and_tandem(settings, send_one, fail_silently=True)
        twin = await outcome_of(asend_mail("Hi", "Body", "a@example.com", ["b@example.com"]))
        silent_twin = await asend_mail("Hi", "Body", "a@example.com", ["b@example.com"], fail_silently=True)
    assert stock == ours == twin
    assert stock[0] is smtplib.SMTPAuthenticationError
    assert silent == (("returned", 0), ("returned", 0))
    assert silent_twin == 0
    assert server.handler.envelopes == []


# -- failures --------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])  # localhost: every address refused
async def test_server_down_fails_as_with_django(settings, host):
    use(settings, free_port(), EMAIL_HOST=host)
    stock, ours = await stock_and_tandem(settings, send_one)
    assert stock == ours
    assert stock[0] is ConnectionRefusedError
    silent = await stock_and_tandem(settings, send_one, fail_silently=True)
    assert silent == (("returned", 0), ("returned", 0))
    with pytest.raises(ConnectionRefusedError):
        await asend_mail("Hi", "Body", "a@example.com", ["b@example.com"])
    assert await asend_mail("Hi", "Body", "a@example.com", ["b@example.com"], fail_silently=True) == 0


async def test_unknown_host_fails_as_with_django(settings):
    use(settings, 25, EMAIL_HOST="no-such-host.invalid")
    stock, ours = await stock_and_tandem(settings, send_one)
    assert stock == ours
    assert issubclass(stock[0], socket.gaierror)


async def test_a_silent_server_times_out_as_with_django(settings):
    with silent_server() as port:
        use(settings, port, EMAIL_TIMEOUT=0.3)
        stock, ours = await stock_and_tandem(settings, send_one)
        start = time.monotonic()
        async with Ticker() as ticker:
            twin = await outcome_of(asend_mail("Hi", "Body", "a@example.com", ["b@example.com"]))
            silent = await asend_mail("Hi", "Body", "a@example.com", ["b@example.com"], fail_silently=True)
        elapsed = time.monotonic() - start
    # smtplib reports a read that timed out as a lost connection, quoting socket.timeout.
    lost = (smtplib.SMTPServerDisconnected, "Connection unexpectedly closed: timed out")
    assert stock == ours == twin == lost
    assert silent == 0
    assert 0.55 < elapsed < 2, elapsed  # two sends, 0.3 s each
    assert ticker.longest < 0.05, ticker.longest


@pytest.mark.parametrize("length", [10_000, 100_000])  # longer than smtplib's 8192; than asyncio's 64 KiB
async def test_an_overlong_reply_line_fails_as_with_django(settings, length):
    async def greet(reader, writer):
        writer.write(b"220 " + b"x" * length + b"\r\n")
        await writer.drain()
        await reader.read()  # until the client hangs up
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    async with server:
        use(settings, server.sockets[0].getsockname()[1])
        stock, ours = await stock_and_tandem(settings, send_one)
    assert stock == ours == (smtplib.SMTPResponseException, "(500, 'Line too long.')")


async def test_a_stream_socket_times_out_like_a_socket():
    with silent_server() as port:

        def read():
            sock = StreamSocket.connect(("127.0.0.1", port), 0.1)
            try:
                sock.sendall(b"EHLO\r\n")
                return sock.makefile("rb").readline(100)
            finally:
                sock.close()

        with pytest.raises(TimeoutError, match=r"^timed out$") as caught:
            await tandem.native(read)()
    assert isinstance(caught.value, socket.timeout)


async def test_a_timeout_of_zero_is_refused_as_by_smtplib(smtp):
    stock = outcome(smtplib.SMTP, "127.0.0.1", smtp.port, timeout=0)
    from tandem.mail.backends.smtp import SMTP

    ours = await tandem.native(outcome)(SMTP, "127.0.0.1", smtp.port, timeout=0)
    assert stock == ours == (ValueError, "Non-blocking socket (timeout=0) is not supported")


async def test_the_same_message_as_djangos_backend(smtp, settings):
    def send():
        message = EmailMultiAlternatives(
            "Ünïcode subject",
            "Body with ünïcode\nand a second line\n.\nand a lone dot",
            "Sender Name <from@example.com>",
            ["to@example.com"],
            cc=["cc@example.com"],
            bcc=["bcc@example.com"],
            reply_to=["reply@example.com"],
            headers={"X-Custom": "yes"},
        )
        message.attach_alternative("<p>ünïcode</p>", "text/html")
        message.attach("notes.txt", "attached text", "text/plain")
        return message.send()

    stock, ours = await stock_and_tandem(settings, send)
    assert stock == ours == ("returned", 1)
    first, second = smtp.handler.envelopes
    assert (first.mail_from, first.rcpt_tos) == (second.mail_from, second.rcpt_tos)

    def comparable(envelope):
        message = message_from_bytes(envelope.content, policy=policy.default)
        for name in ("Message-ID", "Date"):
            del message[name]
        # MIME boundaries are random per message: number them instead.
        content = message.as_bytes()
        boundaries = [p.get_boundary() for p in message.walk() if p.get_boundary()]
        for n, boundary in enumerate(boundaries):
            content = content.replace(boundary.encode(), f"boundary-{n}".encode())
        return content

    assert comparable(first) == comparable(second)


# -- the loop stays free ---------------------------------------------------------


# An SMTP server in a process of its own, as in production: one in a thread
# of this process would take the GIL from the loop it is being tested with.
SERVER_PROCESS = """
import asyncio, sys
from aiosmtpd.controller import Controller

class Slow:
    received = 0

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(float(sys.argv[2]))
        Slow.received += 1
        return "250 OK"

controller = Controller(Slow(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
controller.stop()
print(Slow.received, flush=True)
"""


@contextlib.contextmanager
def server_process(delay):
    """An aiosmtpd server in a subprocess that takes ``delay`` s to accept each message."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVER_PROCESS, str(port), str(delay)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout.readline() == "ready\n"
        received = []
        yield port, received
    finally:
        out, _ = process.communicate("", timeout=10)
    received.append(int(out))


async def test_two_hundred_concurrent_sends_leave_the_loop_free(smtp, settings):
    def message(nth):
        return (f"Message {nth}", "Body", "a@example.com", [f"user{nth}@example.com"])

    # What one send costs the loop thread here, in CPU: Django 6.1 builds a
    # message several times slower than 5.2, and coverage slows everything.
    for nth in range(3):
        await asend_mail(*message(nth))  # warm-up: imports, first connections
    started = time.thread_time()
    for nth in range(10):
        await asend_mail(*message(nth))
    cost = (time.thread_time() - started) / 10
    # Sends arrive over time, 1.5 sends' CPU apart: the loop has spare
    # capacity, so a gap can only come from something holding it, not from a
    # queue of Python work (200 sends started at once would run 200 connects'
    # Python back to back before the ticker gets a turn). The server holds
    # each message until the last send has started: all 200 are in flight together.
    spacing = 1.5 * cost
    in_flight = peak = 0

    async def send(nth):
        nonlocal in_flight, peak
        await asyncio.sleep(nth * spacing)
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await asend_mail(*message(nth))
        finally:
            in_flight -= 1

    with server_process(delay=200 * spacing + 0.2) as (port, received):
        settings.EMAIL_PORT = port
        async with Ticker() as ticker:
            await asyncio.sleep(0.02)
            results = await asyncio.gather(*(send(n) for n in range(200)))
    assert results == [1] * 200
    assert received == [200]
    assert peak == 200
    stall = ticker.longest * 1000
    assert stall < 50, f"the loop stalled for {stall:.0f} ms (a send costs {cost * 1000:.2f} ms)"


def test_a_patched_smtplib_class_is_used_as_with_djangos_backend():
    """A test that patches smtplib.SMTP to stay offline stays offline with tandem's backend too."""
    import smtplib
    from unittest import mock

    from tandem.mail.backends.smtp import EmailBackend

    with mock.patch("smtplib.SMTP") as patched:
        backend = EmailBackend(host="mail.example.com", port=5322)
        backend.open()
    patched.assert_called_once_with("mail.example.com", 5322, local_hostname=mock.ANY)
    assert EmailBackend(host="h").connection_class is not smtplib.SMTP  # unpatched: tandem's own


def test_a_thread_may_take_the_send_lock_again():
    """send_messages() is re-entrant in a thread, as Django's RLock is (a subclass may call it again)."""
    from tandem.mail.backends.smtp import _SendLock

    lock, entered = _SendLock(), []

    def twice():
        with lock:
            with lock:
                entered.append(True)

    worker = threading.Thread(target=twice, daemon=True)
    worker.start()
    worker.join(5)
    assert entered == [True], "a thread waited for the lock it held"
    with lock:  # and it was let go of
        pass
