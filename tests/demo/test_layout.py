"""config/ only configures: the demo's apps share code through demo_api/, never through config/."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEMO_APPS = ("demo_api", "gateway", "home", "orders", "payments")


def imported_modules(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module


def test_no_demo_app_imports_the_project_configuration():
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for app in DEMO_APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        for module in imported_modules(path)
        if module == "config" or module.startswith("config.")
    ]

    assert offenders == []


def test_config_holds_settings_urls_and_wsgi_only():
    modules = sorted(path.name for path in (ROOT / "config").glob("*.py"))

    assert modules == ["__init__.py", "settings.py", "urls.py", "wsgi.py"]
