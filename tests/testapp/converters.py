"""Path converters whose values are not JSON, registered once for both test URL confs."""

from __future__ import annotations

from datetime import date

from django.urls import register_converter


class IsoDateConverter:
    regex = r"\d{4}-\d{2}-\d{2}"

    def to_python(self, value: str) -> date:
        return date.fromisoformat(value)

    def to_url(self, value: date) -> str:
        return value.isoformat()


class Account:
    """What a custom converter may hand a view: no ``__eq__`` and no ``__repr__`` of its own."""

    def __init__(self, number: str) -> None:
        self.number = number


class AccountConverter:
    regex = r"acct_[a-z0-9]+"

    def to_python(self, value: str) -> Account:
        return Account(value)

    def to_url(self, value: Account) -> str:
        return value.number


register_converter(IsoDateConverter, "isodate")
register_converter(AccountConverter, "account")
