"""``manage.py bench_session``: a logged-in session for ``bench/http.py``'s ``me-event`` scenario."""

from importlib import import_module

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    """Make sure user ``bench`` exists, log it in to a new session, print the session cookie's value.

    The session is what ``django.contrib.auth.login`` would store: the user's
    primary key, its authentication backend and its session hash (which
    depends on ``SECRET_KEY`` and the password's hash, so run this with the
    settings the servers use). ``bench/http.py`` sends it with every request:
    ``Cookie: sessionid=<printed value>``.
    """

    help = "Create user bench if missing and print the key of a new session logged in as bench."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default="bench")
        parser.add_argument("--password", default="bench", help="Only used when the user is created.")

    def handle(self, *args, username: str, password: str, **options) -> None:
        user, _ = get_user_model().objects.get_or_create(
            username=username, defaults={"password": make_password(password)}
        )
        session = import_module(settings.SESSION_ENGINE).SessionStore()
        session[SESSION_KEY] = user._meta.pk.value_to_string(user)
        session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.save()
        self.stdout.write(session.session_key)
