from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class IdempotencyRecord(models.Model):
    """One logical operation: a key within a scope, its request fingerprint and its outcome."""

    class State(models.TextChoices):
        IN_PROGRESS = "in_progress", _("in progress")
        COMPLETED = "completed", _("completed")

    scope = models.CharField(_("scope"), max_length=255)
    key = models.CharField(_("key"), max_length=255)
    fingerprint = models.CharField(_("request fingerprint"), max_length=64)
    method = models.CharField(_("method"), max_length=16)
    path = models.TextField(_("path"))
    state = models.CharField(_("state"), max_length=16, choices=State.choices)
    response_status = models.PositiveSmallIntegerField(_("response status"), null=True, blank=True)
    response_headers = models.JSONField(_("response headers"), default=list, blank=True)
    response_body = models.BinaryField(_("response body"), default=b"", blank=True)
    # The lease: whoever holds ``lease_token`` may complete the record until ``locked_until``;
    # after that a retry may take the key over with a new token (its holder is presumed dead).
    lease_token = models.UUIDField(_("lease token"), null=True, blank=True)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)
    created_at = models.DateTimeField(_("created at"))
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    expires_at = models.DateTimeField(_("expires at"))

    class Meta:
        verbose_name = _("idempotency record")
        verbose_name_plural = _("idempotency records")
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique"),
        ]
        indexes = [
            models.Index(fields=["expires_at"], name="idempotency_expires_at_idx"),
            # The admin's list (newest first) and its date filter; the exact-key search (the
            # unique constraint leads with scope); and the in-progress filter, small because a
            # record leaves it when it completes.
            models.Index(fields=["created_at"], name="idempotency_created_at_idx"),
            models.Index(fields=["key"], name="idempotency_key_idx"),
            models.Index(
                fields=["created_at"],
                condition=models.Q(state="in_progress"),
                name="idempotency_in_progress_idx",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.key} ({self.get_state_display()}, {self.method} {self.path})"
