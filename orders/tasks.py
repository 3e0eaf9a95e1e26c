"""The order confirmation email as a Celery task: one email per order, however often delivered.

Brokers deliver a message at least once: a publisher that retries sends it twice, a worker that
dies before acknowledging gets it redelivered. ``IdempotentTask`` keys every delivery by the
order id: the first runs the body, later ones get its stored result and send nothing.

Once means once per committed run. The email leaves before the guard's transaction commits, so a
worker that dies between the two (or a commit that fails) leaves the key free and the redelivery
emails again: a duplicate in that narrow window, rather than a confirmation never sent.
"""

from __future__ import annotations

from demo_api.celery import app
from idempotency.contrib.celery import IdempotentTask
from orders.emails import send_confirmation


# Bound to the demo's app, not @shared_task (see demo_api.celery). Celery has no types: mypy
# sees the decorator as untyped.
@app.task(  # type: ignore[untyped-decorator]
    base=IdempotentTask,
    idempotency_key="order_id",  # scope celery:orders.tasks.send_order_confirmation
    acks_late=True,  # acknowledged once it ran: a dead worker's message comes back
    task_reject_on_worker_lost=True,  # ... also when only its pool process died
    autoretry_for=(OSError,),  # the mail server down or unreachable (smtplib's errors too)
    retry_backoff=True,
    max_retries=5,  # also covers waiting while another delivery holds the key
)
def send_order_confirmation(order_id: str) -> dict[str, str | None]:
    return {"orderId": order_id, "emailedTo": send_confirmation(order_id)}
