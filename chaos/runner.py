"""One database's run, in a process of its own (Django is configured once per process).

For each scenario that applies to the database: fresh tables, then a fresh
event loop (``asyncio.run``) on which the scenario runs under an overall
deadline, the books are balanced, and the loop closes; then the checks that
need the loop gone (its pools closed every connection).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from collections import Counter

from chaos.books import LagMonitor, Run, Tally, after_loop, balance, rss_mb
from chaos.server import Admin

STRAGGLER_SECONDS = 5.0  # how long cancelled stragglers get to finish
LOG_SAMPLES = 5  # log messages kept per scenario


class Watch(logging.Handler):
    """During a scenario: the warnings and errors logged, and the cyclic GC's pauses.

    The logs are counted by logger, not printed: tandem's blocking detector,
    its MySQL kill warnings, asyncio's "exception was never retrieved"...
    (``asyncio`` errors are what the loop's exception handler reported).
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter = Counter()
        self.samples: list[str] = []
        self.gc_max = 0.0
        self._gc_started = None

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.name] += 1
        if len(self.samples) < LOG_SAMPLES:
            lines = record.getMessage().strip().splitlines()[:2]
            self.samples.append(f"{record.name}: {' / '.join(lines)}"[:240])

    def _gc(self, phase: str, info: dict) -> None:
        if asyncio._get_running_loop() is None:
            return  # the runner's own gc.collect() between loops: nobody waits
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.gc_max = max(self.gc_max, time.perf_counter() - self._gc_started)

    def __enter__(self) -> Watch:
        logging.getLogger().addHandler(self)
        gc.callbacks.append(self._gc)
        return self

    def __exit__(self, *exc_info) -> None:
        gc.callbacks.remove(self._gc)
        logging.getLogger().removeHandler(self)

    def record(self, tally: Tally) -> None:
        tally.figures["logged"] = dict(self.counts)
        if self.samples:
            tally.figures["log_samples"] = self.samples
        tally.figures["loop_errors"] = self.counts["asyncio"]
        if self.counts["asyncio"]:
            tally.note(f"{self.counts['asyncio']} errors reported by the loop; the first: {self.samples}")
        tally.figures["gc_max_pause_ms"] = round(self.gc_max * 1000, 1)


def setup_django(vendor: str) -> None:
    os.environ["TANDEM_CHAOS_DB"] = vendor
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "chaos.settings")
    import django

    django.setup()
    if vendor == "sqlite":
        from chaos.app.views import QUERY_SECONDS, sqlite_rows

        sqlite_rows(QUERY_SECONDS)  # measured now, not on a scenario's loop


def create_schema() -> None:
    """Drop and create the app's tables (sync, on the ``setup`` alias)."""
    from django.db import connections

    from chaos.app.models import MODELS

    connection = connections["setup"]
    existing = set(connection.introspection.table_names())
    with connection.schema_editor() as editor:
        for model in MODELS:
            if model._meta.db_table in existing:
                editor.delete_model(model)
            editor.create_model(model)
    connection.close()


def reset_data() -> None:
    """Empty every table and seed the accounts (sync, on the ``setup`` alias)."""
    from django.db import connections

    from chaos.app.models import MODELS, Account
    from chaos.scenarios.isolation import accounts_seed

    for model in MODELS:
        model.objects.using("setup").all().delete()
    Account.objects.using("setup").bulk_create(accounts_seed())
    connections["setup"].close()


async def _on_loop(scenario, tally: Tally, vendor: str, quick: bool) -> None:
    monitor = LagMonitor()
    monitor.start()
    async with Admin(vendor) as admin:
        run = Run(tally, vendor, quick, admin)
        deadline = asyncio.timeout(scenario.limit)
        failed = False
        try:
            async with deadline:
                await scenario.run(run)
        except TimeoutError as exc:
            if not deadline.expired():
                tally.fail_with(exc, "the scenario itself")
            failed = True
        except Exception as exc:
            tally.fail_with(exc, "the scenario itself")
            failed = True
        pending = [task for task in run.tasks if not task.done()]
        if deadline.expired():
            tally.hung += max(1, len(pending))
            tally.note(f"the scenario was still running after {scenario.limit:g} s: {len(pending)} tasks")
        elif pending and not failed:
            tally.leaked_tasks += len(pending)
            tally.note(f"{len(pending)} tasks the scenario started were still running at its end")
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=STRAGGLER_SECONDS)
        await monitor.stop()
        tally.max_loop_lag_ms = monitor.max_lag * 1000
        await balance(run)


def run_database(vendor: str, quick: bool, keys: set[str] | None, report) -> list[dict]:
    """Run the scenarios for ``vendor``; ``report(tally)`` after each. Their JSON rows."""
    from chaos.scenarios import SCENARIOS
    from chaos.server import create_database

    create_database(vendor)
    create_schema()
    rows = []
    for scenario in SCENARIOS:
        if vendor not in scenario.databases or (keys and scenario.key not in keys):
            continue
        reset_data()
        tally = Tally(scenario.key, scenario.title, vendor)
        gc.collect()
        tally.memory_before_mb = rss_mb()
        objects = len(gc.get_objects())
        started = time.perf_counter()
        with Watch() as watch:
            asyncio.run(_on_loop(scenario, tally, vendor, quick))
            after_loop(tally, vendor)
            gc.collect()  # a future nobody retrieved says so when collected
        tally.seconds = time.perf_counter() - started
        watch.record(tally)
        tally.memory_after_mb = rss_mb()
        tally.figures["python_objects_added"] = len(gc.get_objects()) - objects
        report(tally)
        rows.append(tally.as_dict())
    return rows
