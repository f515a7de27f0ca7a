"""The onsale pages: events with live availability, logging in, buying, orders, the mailbox.

Every view is async and awaits Django's own ORM on the event loop: no thread
per query, no connection held while a request waits on anything else.
Templates render with ``tandem.shortcuts.arender``: a page that shows who is
logged in reads the session and the user while it renders, and arender runs
those queries on the loop too.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

from django.conf import settings
from django.contrib.auth import alogin, alogout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import redirect_to_login
from django.db.models import F, Sum
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import aget_object_or_404
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from shop.forms import BuyForm
from shop.models import Event, Order, TicketType
from tandem import aatomic
from tandem.mail import asend_mail
from tandem.shortcuts import arender
from tandem.template.loader import arender_to_string

logger = logging.getLogger(__name__)


async def as_list(queryset) -> list:
    """Evaluate ``queryset`` with ``async for``: one query, no thread."""
    return [row async for row in queryset]


@require_GET
async def event_list(request: HttpRequest) -> HttpResponse:
    """Upcoming events with the tickets still on sale for each."""
    events = Event.objects.filter(starts_at__gte=timezone.now()).annotate(
        available=Sum(F("ticket_types__capacity") - F("ticket_types__sold"))
    )
    return await arender(request, "shop/event_list.html", {"events": await as_list(events)})


def buy_form(pk: int, data=None) -> BuyForm:
    """The buy form of event ``pk``: its ticket types, with the event joined for the email."""
    return BuyForm(data, tickets=TicketType.objects.filter(event_id=pk).select_related("event"))


async def render_event(request: HttpRequest, pk: int, form: BuyForm | None = None, status: int = 200):
    """The event page: ticket types, what is left of each, and the buy form."""
    event = await aget_object_or_404(Event, pk=pk)
    tickets = await as_list(event.ticket_types.all())
    context = {"event": event, "tickets": tickets, "form": form or buy_form(pk)}
    return await arender(request, "shop/event_detail.html", context, status=status)


@require_GET
async def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One event, its tickets, and a form to buy some."""
    return await render_event(request, pk)


@require_GET
async def availability(request: HttpRequest, pk: int) -> JsonResponse:
    """Tickets left per ticket type: the event page polls this to stay live."""
    left = TicketType.objects.filter(event_id=pk).values_list("pk", F("capacity") - F("sold"))
    counts = {str(ticket): available async for ticket, available in left}
    if not counts and not await Event.objects.filter(pk=pk).aexists():
        raise Http404("No such event.")
    return JsonResponse(counts)


class SoldOut(Exception):  # noqa: N818 - reads as the outcome it is
    """Fewer tickets are left than were asked for."""


async def sell(form: BuyForm) -> Order:
    """Save the form's order in one transaction with its stock, or raise ``SoldOut``.

    ``select_for_update()`` locks the ticket type's row until the block
    ends: concurrent buyers of the last tickets queue on that lock and each
    sees what the previous one left. The ``CHECK (sold <= capacity)``
    constraint is the database's own guarantee on top.
    """
    order = form.instance
    async with aatomic():
        ticket = await TicketType.objects.select_for_update().aget(pk=order.ticket_type_id)
        if ticket.available < order.quantity:
            raise SoldOut(ticket.name)
        ticket.sold += order.quantity
        await ticket.asave(update_fields=["sold"])
        return await form.asave()


async def send_confirmation(order: Order) -> None:
    """Email the order to its buyer; the SMTP conversation is awaited on the loop.

    Sent after the transaction has committed: a mail server that is down
    does not undo a sale (and no row stays locked while the mail goes out).
    """
    if not order.email:
        return
    body = await arender_to_string("shop/order_email.txt", {"order": order})
    try:
        await asend_mail(f"Your onsale order {order.pk}", body, None, [order.email])
    except OSError:  # smtplib's errors included
        logger.exception("order %s: the confirmation email was not sent", order.pk)


@require_POST
async def buy(request: HttpRequest, pk: int) -> HttpResponse:
    """Validate the buy form, sell, email the confirmation, show the order."""
    user = await request.auser()
    if not user.is_authenticated:
        # Back to the event page once logged in (this view only takes POSTs).
        return redirect_to_login(reverse("event-detail", args=[pk]))
    form = buy_form(pk, request.POST)
    # Validating looks the chosen ticket type up: a query, awaited here.
    if not await form.ais_valid():
        return await render_event(request, pk, form=form, status=400)
    order = form.instance  # its ticket type and quantity set by the form
    order.user, order.email = user, user.email
    try:
        if order.ticket_type.available < order.quantity:
            # Already gone when the form was validated: no need to queue on the lock.
            raise SoldOut(order.ticket_type.name)
        order = await sell(form)
    except SoldOut as sold_out:
        form.add_error(None, f"Sold out: not enough {sold_out} tickets left.")
        return await render_event(request, pk, form=form, status=409)
    await send_confirmation(order)
    # Post/Redirect/Get with 303 See Other: reloading the page doesn't buy again.
    response = HttpResponseRedirect(reverse("order-detail", args=[order.pk]))
    response.status_code = 303
    return response


@require_GET
@login_required
async def order_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One of the user's orders, with its ticket type and event (one query, joined)."""
    related = Order.objects.select_related("ticket_type__event")
    # Someone else's order is a 404, like one that doesn't exist.
    order = await aget_object_or_404(related, pk=pk, user=await request.auser())
    return await arender(request, "shop/order_detail.html", {"order": order})


@require_http_methods(["GET", "POST"])
async def login(request: HttpRequest) -> HttpResponse:
    """Log in with Django's own AuthenticationForm, then go back where the visitor was.

    The form's ``clean()`` calls ``authenticate()``: through ``ais_valid()``
    the user's row is read on the loop and the password hash, 100+ ms of CPU
    by design, runs in tandem's hashing threads, so the loop keeps serving.
    """
    next_url = request.POST.get("next", request.GET.get("next", ""))
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""  # only pages of this site: no open redirect
    form = AuthenticationForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and await form.ais_valid():
        await alogin(request, form.get_user())  # a new session key, the user in it
        return HttpResponseRedirect(next_url or reverse("event-list"))
    return await arender(request, "shop/login.html", {"form": form, "next": next_url})


@require_POST
async def logout(request: HttpRequest) -> HttpResponse:
    """Log out (a POST, as Django's LogoutView wants: a link could be followed by anyone)."""
    await alogout(request)
    return HttpResponseRedirect(reverse("event-list"))


def read_mailbox(store: Path, address: str) -> list[dict]:
    """The messages in the mail sink's store (see mailsink.py) sent to ``address``, newest first."""
    try:
        lines = store.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:  # nothing received yet
        return []
    messages = [json.loads(line) for line in lines if line]
    return [m for m in reversed(messages) if address.lower() in (to.lower() for to in m["rcpt_tos"])]


@require_GET
@login_required
async def mailbox(request: HttpRequest) -> HttpResponse:
    """The emails the local SMTP sink received for the user: proof they were delivered."""
    user = await request.auser()
    # Files have no async API: a thread reads the store, the loop serves on.
    messages = await asyncio.to_thread(read_mailbox, Path(settings.MAILSINK_STORE), user.email)
    return await arender(request, "shop/mailbox.html", {"messages": messages, "address": user.email})
