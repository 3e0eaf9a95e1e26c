"""Scopes named for people: ``auth.user:2`` shown as the user it names.

The admin resolves a whole page of scopes at once, one query per model, never one per row.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from typing import Any

from django.apps import apps
from django.contrib.auth import get_permission_codename
from django.core.exceptions import ValidationError
from django.db.models import Model


def model_scope_labels(user: Any, scopes: Collection[str]) -> dict[str, str]:
    """``{scope: str(object)}`` for scopes ``app_label.model:pk`` naming an existing object.

    Only models ``user`` may view are looked up, so the admin shows no more than the user's
    permissions already allow. Other scopes (``anonymous``, your own) are left out.
    """
    wanted: defaultdict[type[Model], dict[Any, str]] = defaultdict(dict)
    for scope in scopes:
        model, pk = parse_model_scope(scope)
        if model is not None and may_view(user, model):
            wanted[model][pk] = scope
    labels = {}
    for model, scope_by_pk in wanted.items():
        for pk, obj in model._default_manager.in_bulk(list(scope_by_pk)).items():
            labels[scope_by_pk[pk]] = str(obj)
    return labels


def parse_model_scope(scope: str) -> tuple[type[Model] | None, Any]:
    """The model and primary key a scope ``app_label.model:pk`` names, else ``(None, None)``."""
    label, colon, raw_pk = scope.partition(":")
    if not colon or label.count(".") != 1:
        return None, None
    try:
        model = apps.get_model(label)
        pk = model._meta.pk.to_python(raw_pk) if model._meta.pk else None
    except (LookupError, ValueError, ValidationError):
        return None, None
    return (model, pk) if pk is not None else (None, None)


def may_view(user: Any, model: type[Model]) -> bool:
    opts = model._meta
    return any(
        user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
        for action in ("view", "change")
    )
