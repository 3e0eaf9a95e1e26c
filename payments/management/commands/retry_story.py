from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from payments.story import STORY_CUSTOMER, STORY_SKU, STORY_USER, Story, render

INTRO = """\
The retry story, played against the real code (what a key promises, and when:
docs/guarantees.md; under bin/demo, http://127.0.0.1:8000/ plays it in a browser).

Each operation is sent, then retried with the same body: after its response was lost, and after
the server crashed while handling it (X-Demo-Fault). "Without idempotency" is the same view
without IdempotentMixin and without a key; "with idempotency" is the routed view, with one
Idempotency-Key for the operation and its retry. Last, an order's confirmation message is
delivered twice, as brokers may: to the Celery task's body alone, then to the task guarded by
IdempotentTask. Counts are what each produced: gateway charges, payments, orders, stock taken
and confirmation emails. (Actors: user {user}, customer {customer}, product {sku}; their records
stay in the database for the admin.)
"""

OUTRO = """
Read it as:
- A lost response: without a key the retry is a second operation (a second charge, a second
  order, two emails); with one, the retry gets the stored answer and nothing runs again.
- A crash after the gateway charged: the payment rolled back, but the charge, outside our
  database, did not. Without a key the retry charges again; with one, the gateway key derived
  from it makes the gateway hand back the first charge.
- A crash before the order committed: the database rolled the order, its stock and its
  on-commit email back either way. Keys protect what a rollback cannot undo.
- A message delivered twice: brokers deliver at least once. Without the guard each delivery
  runs the task and emails; with it, keyed by the order id, the second delivery finds the key
  completed, gets the first one's stored result and sends nothing.
"""


class Command(BaseCommand):
    help = "Play the retry scenarios without and with idempotency, side by side."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(INTRO.format(user=STORY_USER, customer=STORY_CUSTOMER, sku=STORY_SKU))
        self.stdout.write(render(Story().play()))
        self.stdout.write(OUTRO)
