"""config/ only configures: the demo's apps share code through demo_api/, never through config/."""

from __future__ import annotations

import ast
import re
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


def test_the_demo_doc_names_only_folders_that_exist_and_every_demo_app():
    doc = (ROOT / "docs" / "demo.md").read_text()
    folders = set(re.findall(r"`([a-z_]+)/`", doc))

    assert set(DEMO_APPS) | {"config"} <= folders
    assert [folder for folder in sorted(folders) if not (ROOT / folder).is_dir()] == []


def test_the_demo_doc_lists_exactly_the_settings_read_from_the_environment():
    doc = (ROOT / "docs" / "demo.md").read_text()
    section = doc.split("## Settings from the environment", 1)[1].split("\n## ", 1)[0]
    settings_source = (ROOT / "config" / "settings.py").read_text()

    documented = set(re.findall(r"`([A-Z][A-Z_]+)`", section))
    read = set(re.findall(r'env(?:\.\w+)?\(\s*"([A-Z_]+)"', settings_source))
    assert documented == read
