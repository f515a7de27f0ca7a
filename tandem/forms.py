"""Async validation and saving for Django's forms and formsets.

``form.is_valid()`` can query the database: a ``ModelChoiceField`` looks its
choice up, a ``ModelForm`` checks unique constraints, a ``clean()`` method
may do anything. In async code that raises ``SynchronousOnlyOperation``.
tandem gives ``BaseForm``, ``BaseFormSet`` and their model variants async
twins that run the sync method in the bridge, so the queries are awaited:

    form = OrderForm(request.POST)
    if await form.ais_valid():
        order = await form.asave()

``ais_valid()``, ``afull_clean()`` on forms and formsets; ``asave(commit=True)``
on model forms and model formsets. For a model on a stock Django alias they
fall back to a thread, like Django's own ``a*`` methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import router

from tandem.bridge.placing import placed
from tandem.db.scope import is_tandem_alias

__all__ = ["afull_clean", "ais_valid", "asave"]


def _model_of(obj: Any) -> Any:
    meta = getattr(obj, "_meta", None)  # a ModelForm's options
    model = getattr(meta, "model", None)
    return model if model is not None else getattr(obj, "model", None)  # a model formset


async def _run(obj: Any, method: Callable[..., Any], *args: Any) -> Any:
    model = _model_of(obj)
    on_loop = model is None or is_tandem_alias(router.db_for_write(model))
    return await placed(method, on_loop)(*args)


async def ais_valid(self) -> bool:
    """``is_valid()``, with any query its validation makes awaited."""
    return await _run(self, self.is_valid)


async def afull_clean(self) -> None:
    """``full_clean()``, with any query its validation makes awaited."""
    return await _run(self, self.full_clean)


async def asave(self, commit: bool = True) -> Any:
    """``save(commit)`` of a model form or model formset, natively."""
    return await _run(self, self.save, commit)
