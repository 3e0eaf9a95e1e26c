from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import models
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
        user_model = get_user_model()
        # The model's own field: not blank, not too long, and its validator (Django's
        # UnicodeUsernameValidator: letters, digits and @.+-_ only), as createsuperuser checks.
        username_field = user_model._meta.get_field(user_model.USERNAME_FIELD)
        assert isinstance(username_field, models.Field)
        try:
            username = username_field.clean(username, None)
        except ValidationError as error:
            raise CommandError(
                f"Invalid username {username!r}: {' '.join(error.messages)}"
            ) from None
        if email is not None:
            try:
                validate_email(email)
            except ValidationError as error:
                raise CommandError(f"Invalid email {email!r}: {' '.join(error.messages)}") from None
        user, created = user_model.objects.get_or_create(
            username=username, defaults={"email": email or f"{username}@example.com"}
        )
        if created:
            # An API user: token only, no password to log in with.
            user.set_unusable_password()
            user.save(update_fields=["password"])
        token, _ = Token.objects.get_or_create(user=user)
        self.stdout.write(token.key)
