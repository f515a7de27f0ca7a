"""Database backends: Django's own, bridged onto the event loop."""
