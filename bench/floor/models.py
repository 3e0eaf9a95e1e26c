"""The two operations' rows: a note per request, and the one counter every request updates."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

# The counter every hot-row request updates (created by the migration).
HOT_ROW_ID = 1


class Note(models.Model):
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    text = models.CharField(max_length=200)
    created_at = models.DateTimeField(default=timezone.now)


class Counter(models.Model):
    value = models.BigIntegerField(default=0)
