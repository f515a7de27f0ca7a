"""Sync code in the bridge does blocking I/O by waiting on the loop: sockets, TLS, names, sleeps.

A view that calls an HTTP API with ``requests``, redis-py or ``smtplib``
blocks the thread it runs in. In a bridge greenlet that thread is the
loop's, so every other request of the worker would wait. The standard
library calls such code makes are replaced (see ``tandem.patches``) by
versions that, in a bridge greenlet only, wait for their socket on the
loop: the greenlet switches out like any ``await_()`` and other tasks run.
Everywhere else (other threads, async code, sockets made non-blocking by
their owner) they are the originals.

* ``waiting``: how a call waits (the loop's readers and writers, the
  socket's timeout, cancellation closes the socket);
* ``sockets``: ``socket.socket`` and ``ssl.SSLSocket`` methods;
* ``names``: name resolution in the loop's executor, ``time.sleep``.

``TANDEM_COOPERATIVE_IO = False`` turns it off (the calls block the loop
again, and the blocking detector names them).
"""
