from __future__ import annotations

from django.db import models


class Widget(models.Model):
    """What a protected operation writes; rolled back with the operation when it fails."""

    name = models.CharField(max_length=100)
    size = models.IntegerField(default=1)
