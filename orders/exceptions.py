from __future__ import annotations

from typing import Any

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _
from rest_framework import status

from idempotency.exceptions import ProblemDetailsError


class OutOfStock(ProblemDetailsError):
    """Not enough stock for the order: final for this request, so stored and replayed.

    422, not 409: in this API a 409 means "in progress, retry after Retry-After", and an order
    that found too little stock will not succeed by being sent again. Clients tell the two
    apart by the problem ``type`` (``...:out-of-stock``) as RFC 9457 intends.
    """

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    problem_type = "out-of-stock"
    title = _("Not enough stock")
    default_code = "out_of_stock"

    def __init__(self, sku: str, requested: int, available: int) -> None:
        super().__init__(
            gettext(
                "Only %(available)d of %(sku)s left; %(requested)d requested. "
                "Order fewer, with a new idempotency key."
            )
            % {"available": available, "sku": sku, "requested": requested}
        )
        self.sku, self.requested, self.available = sku, requested, available

    def problem(self) -> dict[str, Any]:
        # RFC 9457 extension members: what a client needs to offer a smaller order.
        return {
            **super().problem(),
            "sku": self.sku,
            "requested": self.requested,
            "available": self.available,
        }
