"""Optional integrations, each imported only when its dependency is installed."""

from __future__ import annotations
