from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from rest_framework.authtoken.models import Token


class Command(BaseCommand):
    help = (
        "Print the API token of USERNAME (alone on stdout), creating the user and the token "
        "if needed. Use it as: Authorization: Token <token>"
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument(
            "--email", help="Email address for a new user (default: USERNAME@example.com)."
        )

    def handle(self, *args: Any, username: str, email: str | None, **options: Any) -> None:
        user, created = get_user_model().objects.get_or_create(
            username=username, defaults={"email": email or f"{username}@example.com"}
        )
        if created:
            # An API user: token only, no password to log in with.
            user.set_unusable_password()
            user.save(update_fields=["password"])
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
