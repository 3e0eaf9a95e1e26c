"""``manage.py purge_idempotency_records``: delete expired records in bounded batches.

Run it from cron (say hourly). It is safe beside live traffic: see :mod:`idempotency.purge`.
"""

from __future__ import annotations

from argparse import ArgumentParser
from typing import Any

from django.core.management.base import BaseCommand, CommandError

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
            help="Records deleted per transaction (default: 1000).",
        )
        parser.add_argument(
            "--sleep",
            type=float,
            default=0.0,
            help="Seconds to pause between batches, to spread the load (default: 0).",
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
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        if options["sleep"] < 0:
            raise CommandError("--sleep must not be negative.")
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
