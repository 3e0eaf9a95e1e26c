from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from orders.models import Product
from payments.models import Customer


class UserFactory(factory.django.DjangoModelFactory):
    """An API user with an email address and a token (``user.auth_token.key``)."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"u{n + 1}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    token = factory.RelatedFactory("tests.demo.factories.TokenFactory", factory_related_name="user")


class TokenFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Token
        django_get_or_create = ("user",)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer
        django_get_or_create = ("customer_id",)

    customer_id = factory.Sequence(lambda n: f"cust_{n + 100}")
    name = factory.Faker("name")
    email = factory.LazyAttribute(lambda customer: f"{customer.customer_id}@example.com")


class ProductFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Product
        django_get_or_create = ("sku",)

    sku = factory.Sequence(lambda n: f"product-{n}")
    name = factory.LazyAttribute(lambda product: product.sku.replace("-", " ").title())
    stock = 10
