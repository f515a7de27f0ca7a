"""The database layer: Django's database code on the loop, on connections owned by tasks.

* ``scope``: which connection a task uses (its own, its block's, its
  test's), and the unit of work that brackets each ``native()`` call;
* ``pool``: a pool of connections per event loop and alias;
* ``routing``: which of Django's async ORM calls run natively;
* ``session``, ``guard``, ``threaded``: the session-state watch, Django's
  async-safety guard made bridge-aware, and worker threads for drivers
  that block;
* ``fastlane``: repeated query shapes reuse what Django built for them;
* ``backends``: the PostgreSQL, SQLite and MariaDB/MySQL backends.

It may import ``tandem.bridge``, ``tandem.patches`` and ``tandem.conf``.
"""
