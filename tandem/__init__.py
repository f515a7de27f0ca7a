"""django-tandem: Django's own ORM and I/O, running natively on the asyncio loop.

Public API::

    from tandem import native, await_, in_bridge, aatomic
"""

from tandem.bridge import OutsideBridgeError, await_, in_bridge, native

__all__ = [
    "OutsideBridgeError",
    "TransactionEnded",
    "TransactionInThread",
    "aatomic",
    "await_",
    "in_bridge",
    "native",
]
__version__ = "0.1.0"


def __getattr__(name: str):
    # aatomic and the transaction errors import Django's db layer: load them lazily so
    # `import tandem` works before settings are configured.
    if name == "aatomic":
        from tandem.transaction import aatomic

        return aatomic
    if name in ("TransactionEnded", "TransactionInThread"):
        from tandem.db import scope

        return getattr(scope, name)
    raise AttributeError(f"module 'tandem' has no attribute {name!r}")
