from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand
from django.db import transaction

from orders.models import Product
from payments.models import Customer

CUSTOMERS = [
    {"customer_id": "cust_123", "name": "Ada Lovelace", "email": "ada@example.com"},
    {"customer_id": "cust_456", "name": "Grace Hopper", "email": "grace@example.com"},
]
# laptop-13 has a small stock on purpose: a few orders show "out of stock".
PRODUCTS = [
    {"sku": "laptop-13", "name": "Laptop 13-inch", "stock": 3},
    {"sku": "mouse-1", "name": "Wireless mouse", "stock": 100},
]


class Command(BaseCommand):
    help = (
        "Load the demo's customers and products. Idempotent: what exists is left as it is "
        "(stock included), so running it again never undoes the demo's orders."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        created = 0
        with transaction.atomic():
            for customer in CUSTOMERS:
                _, new = Customer.objects.get_or_create(
                    customer_id=customer["customer_id"], defaults=customer
                )
                created += new
            for product in PRODUCTS:
                _, new = Product.objects.get_or_create(sku=product["sku"], defaults=product)
                created += new
        existing = len(CUSTOMERS) + len(PRODUCTS) - created
        self.stdout.write(f"Demo data: {created} created, {existing} already there.")
