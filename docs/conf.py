"""Sphinx configuration of the documentation site (built by ``bin/docs``).

The pages are Markdown (MyST); the API reference is generated from the docstrings, which needs
Django set up: a minimal configuration of the library's own apps, so the site builds with the
package and its ``docs`` dependency group alone (no demo project, no database server).
"""

from __future__ import annotations

import sys
from pathlib import Path

import django
from django.conf import settings
from sphinx.application import Sphinx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

if not settings.configured:
    settings.configure(
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "rest_framework",
            "idempotency",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        USE_TZ=True,
    )
django.setup()

import idempotency  # noqa: E402  (after django.setup(): the app's modules import models)

project = "django-idempotency"
author = "django-idempotency developers"
copyright = "2026, django-idempotency developers"
release = idempotency.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "deflist"]
# "## Heading" anchors, so [text](page.md#heading) links resolve.
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "show-inheritance": True}

# No network during the build (CI is offline): cross-references to Python and Django docs are
# written as plain links instead of intersphinx lookups.
intersphinx_mapping: dict[str, tuple[str, str | None]] = {}

html_theme = "furo"
html_title = f"django-idempotency {release}"
html_theme_options = {
    "source_repository": "https://github.com/django-idempotency/django-idempotency/",
    "source_branch": "main",
    "source_directory": "docs/",
}

# Optional pages: listed in the navigation of index.md, dropped from it while their file does
# not exist yet (a page written on another branch), instead of failing the strict build.
OPTIONAL_PAGES = ("celery",)


def _drop_missing_optional_pages(app: Sphinx, docname: str, source: list[str]) -> None:
    if docname != "index":
        return
    for page in OPTIONAL_PAGES:
        if not (Path(__file__).parent / f"{page}.md").exists():
            source[0] = "\n".join(line for line in source[0].splitlines() if line.strip() != page)


def setup(app: Sphinx) -> None:
    app.connect("source-read", _drop_missing_optional_pages)
