"""The onsale pages: event list, event page with live availability, buying, orders.

Every view is async and awaits Django's own ORM on the event loop: no thread
per query, no connection held while a request waits on anything else.
"""

from __future__ import annotations

from django.db.models import F, Sum
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import aget_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from shop.forms import BuyForm
from shop.models import Event, Order, TicketType
from tandem import aatomic


async def as_list(queryset) -> list:
    """Evaluate ``queryset`` with ``async for``: one query, no thread."""
    return [row async for row in queryset]


@require_GET
async def event_list(request: HttpRequest) -> HttpResponse:
    """Upcoming events with the tickets still on sale for each."""
    events = Event.objects.filter(starts_at__gte=timezone.now()).annotate(
        available=Sum(F("ticket_types__capacity") - F("ticket_types__sold"))
    )
    return render(request, "shop/event_list.html", {"events": await as_list(events)})


async def render_event(request: HttpRequest, pk: int, form: BuyForm | None = None, status: int = 200):
    """The event page: ticket types, what is left of each, and the buy form."""
    event = await aget_object_or_404(Event, pk=pk)
    tickets = await as_list(event.ticket_types.all())
    form = form or BuyForm(tickets=tickets)
    return render(
        request, "shop/event_detail.html", {"event": event, "tickets": tickets, "form": form}, status=status
    )


@require_GET
async def event_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One event, its tickets, and a form to buy some."""
    return await render_event(request, pk)


@require_GET
async def availability(request: HttpRequest, pk: int) -> JsonResponse:
    """Tickets left per ticket type: the event page polls this to stay live."""
    left = TicketType.objects.filter(event_id=pk).values_list("pk", F("capacity") - F("sold"))
    return JsonResponse({str(ticket): available async for ticket, available in left})


class SoldOut(Exception):  # noqa: N818 - reads as the outcome it is
    """Fewer tickets are left than were asked for."""


async def sell(ticket_type_id: int, event_id: int, email: str, quantity: int) -> Order:
    """Sell ``quantity`` tickets in one transaction, or raise ``SoldOut``.

    ``select_for_update()`` locks the ticket type's row until the block
    ends: concurrent buyers of the last tickets queue on that lock and each
    sees what the previous one left. The ``CHECK (sold <= capacity)``
    constraint is the database's own guarantee on top.
    """
    async with aatomic():
        locked = TicketType.objects.select_for_update()
        ticket = await aget_object_or_404(locked, pk=ticket_type_id, event_id=event_id)
        if ticket.available < quantity:
            raise SoldOut(ticket.name)
        ticket.sold += quantity
        await ticket.asave(update_fields=["sold"])
        return await Order.objects.acreate(ticket_type=ticket, email=email, quantity=quantity)


@require_POST
async def buy(request: HttpRequest, pk: int) -> HttpResponse:
    """Validate the buy form, sell, and show the order (or a clear sold-out page)."""
    tickets = await as_list(TicketType.objects.filter(event_id=pk))
    form = BuyForm(request.POST, tickets=tickets)
    if not form.is_valid():
        return await render_event(request, pk, form=form, status=400)
    data = form.cleaned_data
    chosen = next(t for t in tickets if str(t.pk) == data["ticket_type"])
    try:
        if chosen.available < data["quantity"]:
            # Already gone when the page loaded: no need to queue on the lock.
            raise SoldOut(chosen.name)
        order = await sell(chosen.pk, pk, data["email"], data["quantity"])
    except SoldOut as sold_out:
        form.add_error(None, f"Sold out: not enough {sold_out} tickets left.")
        return await render_event(request, pk, form=form, status=409)
    # Post/Redirect/Get with 303 See Other: reloading the page doesn't buy again.
    response = HttpResponseRedirect(reverse("order-detail", args=[order.pk]))
    response.status_code = 303
    return response


@require_GET
async def order_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One order, with its ticket type and event (one query, joined)."""
    related = Order.objects.select_related("ticket_type__event")
    order = await aget_object_or_404(related, pk=pk)
    return render(request, "shop/order_detail.html", {"order": order})
