"""The benchmark: what idempotency costs, measured side by side (``python -m bench``)."""

from __future__ import annotations
