"""``manage.py purge_idempotency_records``: delete expired records in bounded batches.

Run it from cron (say hourly). It is safe beside live traffic: see :mod:`idempotency.purge`.
"""

from __future__ import annotations

import math
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import connections

from idempotency.purge import Purger


class Command(BaseCommand):
    help = (
        "Delete expired idempotency records in batches, each its own short transaction. "
        "Records in progress whose lease still runs are kept."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            help="Records deleted per transaction, 1 to 100000 (default: 1000).",
        )
        parser.add_argument(
            "--sleep",
            type=float,
            default=0.0,
            help="Seconds to pause between batches, 0 to 3600, to spread the load (default: 0).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count the records that would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--database",
            default=None,
            help="Database alias (default: the one the router picks for idempotency records).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        validate(options)
        purger = Purger(batch_size=options["batch_size"], using=options["database"])
        if options["dry_run"]:
            count = purger.count()
            self.stdout.write(f"Would delete {count} expired idempotency record(s) (dry run).")
            return

        def report(deleted: int) -> None:
            if options["verbosity"] >= 2:
                self.stdout.write(f"  deleted {deleted}")

        result = purger.run(pause=options["sleep"], on_batch=report)
        self.stdout.write(
            f"Deleted {result.deleted} expired idempotency record(s) in {result.batches} batch(es)."
        )


# Bounds that catch typos before the first batch goes: a larger batch holds its row locks (and,
# on SQLite, the database) for longer than a batch should, and a longer pause is a mistake.
MAX_BATCH_SIZE = 100_000
MAX_SLEEP = 3600.0


def validate(options: dict[str, Any]) -> None:
    """Refuse bad options before anything is deleted, with a message that says what to type."""
    batch_size, sleep, database = options["batch_size"], options["sleep"], options["database"]
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise CommandError(
            f"--batch-size must be between 1 and {MAX_BATCH_SIZE}, not {batch_size}."
        )
    # NaN compares false to everything and inf overflows time.sleep(): both would pass a plain
    # "< 0" test and fail only after the first batch was deleted.
    if not (math.isfinite(sleep) and 0 <= sleep <= MAX_SLEEP):
        raise CommandError(
            f"--sleep must be a number of seconds from 0 to {MAX_SLEEP:g}, not {sleep}."
        )
    if database is not None and database not in connections.settings:
        raise CommandError(
            f"--database {database!r} is not in settings.DATABASES "
            f"(known aliases: {', '.join(connections.settings)})."
        )
