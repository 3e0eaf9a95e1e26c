"""Facts quoted in docs/ stay equal to the code: settings and defaults, check IDs, headers,
problem types, signals, public import paths, links, and the classifiers against the matrix."""

from __future__ import annotations

import importlib
import re
import tomllib
from datetime import timedelta
from importlib.util import find_spec
from pathlib import Path

import pytest

from idempotency import exceptions, signals
from idempotency.checks import MESSAGES
from idempotency.conf import DEFAULTS
from idempotency.mixins import REPLAYED_HEADER

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def doc(name):
    return (DOCS / name).read_text()


def literal(value):
    """A default as docs/settings.md writes it."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "(" + ", ".join(literal(item) for item in value) + ")"
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        if seconds % 3600 == 0:
            return f"timedelta(hours={seconds // 3600})"
        return f"timedelta(seconds={seconds})"
    return repr(value)


@pytest.mark.parametrize("key", list(DEFAULTS))
def test_every_setting_and_its_default_is_documented(key):
    row = f"| `{key}` | `{literal(DEFAULTS[key])}` |"
    assert row in doc("settings.md"), f"docs/settings.md lacks the row starting {row}"


def test_the_settings_table_documents_no_key_the_code_lacks():
    documented = re.findall(r"^\| `([A-Z_]+)` \| `", doc("settings.md"), flags=re.MULTILINE)
    assert sorted(documented) == sorted(DEFAULTS)


@pytest.mark.parametrize("check_id", sorted(MESSAGES))
def test_every_check_id_is_documented(check_id):
    assert f"| `{check_id}` |" in doc("commands.md")


def test_the_docs_list_no_check_id_the_code_lacks():
    documented = set(
        re.findall(r"idempotency\.[EW]\d{3}", "".join(doc(p.name) for p in DOCS.glob("*.md")))
    )
    assert documented <= set(MESSAGES)


PROBLEMS = sorted(
    (error for error in vars(exceptions).values() if isinstance(error, type)),
    key=lambda error: error.__name__,
)
PROBLEMS = [
    error
    for error in PROBLEMS
    if issubclass(error, exceptions.ProblemDetailsError)
    and error is not exceptions.ProblemDetailsError
]


@pytest.mark.parametrize("error", PROBLEMS, ids=lambda error: error.__name__)
def test_every_problem_type_is_documented_with_its_status_uri_and_code(error):
    base = DEFAULTS["PROBLEM_TYPE_BASE"]
    row = (
        f"| {error.status_code} | `{error.problem_type}` | `{base}{error.problem_type}` "
        f"| `{error.default_code}` |"
    )
    assert row in doc("http-contract.md"), f"docs/http-contract.md lacks the row starting {row}"
    assert error.__name__ in doc("api.md")


def test_header_names_are_documented():
    contract = doc("http-contract.md")
    for name in (DEFAULTS["HEADER"], REPLAYED_HEADER, "Retry-After"):
        assert f"| `{name}` |" in contract
    assert f"`{REPLAYED_HEADER}: true`" in contract
    assert f"Content-Type: {exceptions.PROBLEM_CONTENT_TYPE}" in contract


def test_every_signal_is_documented():
    api = doc("api.md")
    for name in signals.OUTCOMES:
        assert f"`{name}`" in api


def test_public_import_paths_in_the_api_docs_exist():
    paths = set(re.findall(r"`(idempotency(?:\.[a-z_]+)+(?:\.[A-Za-z_]+)?)", doc("api.md")))
    assert len(paths) > 10
    for dotted in sorted(paths):
        if dotted.startswith("idempotency.contrib.") and not find_spec("drf_spectacular"):
            continue  # an optional integration, checked where its package is installed
        try:
            importlib.import_module(dotted)
        except ImportError:
            module, _, name = dotted.rpartition(".")
            assert hasattr(importlib.import_module(module), name), dotted


def test_relative_links_between_docs_resolve():
    for page in DOCS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (DOCS / target).exists(), f"{page.name} links to missing {target}"


def matrix_legs():
    text = (ROOT / ".ci" / "matrix").read_text()
    return re.findall(r'^\s*"[a-z0-9]+\|(\d\.\d+)\|django==(\d\.\d)\.\*\|', text, re.MULTILINE)


def test_classifiers_list_exactly_the_tested_versions():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classifiers = project["classifiers"]
    pythons = {
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: \d\.\d+", c)
    }
    djangos = {
        c.rsplit(" ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Framework :: Django :: \d\.\d", c)
    }
    legs = matrix_legs()
    assert legs, "no legs found in .ci/matrix"
    assert pythons == {python for python, _ in legs}
    assert djangos == {django for _, django in legs}
    lowest_python = min(pythons, key=lambda v: tuple(map(int, v.split("."))))
    assert project["requires-python"] == f">={lowest_python}"


PACKAGE_DESCRIPTION = ROOT / "PYPI.md"
MARKDOWN_LINK = re.compile(r"\]\(([^)\s]+)\)|<(https?://[^>]+)>")


def test_the_package_description_links_only_to_absolute_urls():
    # PYPI.md is shown on the package index, where a relative link leads nowhere.
    links = [a or b for a, b in MARKDOWN_LINK.findall(PACKAGE_DESCRIPTION.read_text())]
    links += re.findall(r'(?:href|src)="([^"]+)"', PACKAGE_DESCRIPTION.read_text())
    assert links, "PYPI.md links to nothing"
    relative = [link for link in links if not re.match(r"https://", link)]
    assert not relative, f"PYPI.md has links that are not absolute https URLs: {relative}"


def test_the_package_description_is_the_packages_readme():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["readme"] == PACKAGE_DESCRIPTION.name
    assert project["license"] == "MIT"
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")


def test_the_supported_versions_in_the_descriptions_match_the_classifiers():
    legs = matrix_legs()
    pythons = sorted({python for python, _ in legs}, key=lambda v: tuple(map(int, v.split("."))))
    djangos = sorted({django for _, django in legs}, key=lambda v: tuple(map(int, v.split("."))))
    assert f"| Python | {', '.join(pythons)} |" in PACKAGE_DESCRIPTION.read_text()
    assert f"| Django | {', '.join(djangos)} |" in PACKAGE_DESCRIPTION.read_text()
    for page in (ROOT / "README.md", DOCS / "index.md"):
        text = " ".join(page.read_text().split())
        assert f"Python {pythons[0]} to {pythons[-1]}" in text, page.name
        assert f"Django {', '.join(djangos[:-1])} and {djangos[-1]}" in text, page.name


@pytest.mark.parametrize(
    "page",
    [ROOT / "README.md", PACKAGE_DESCRIPTION, *sorted(DOCS.glob("*.md"))],
    ids=lambda page: page.relative_to(ROOT).as_posix(),
)
def test_pip_install_commands_quote_extras(page):
    # Unquoted, zsh (macOS's shell) globs the brackets: "no matches found".
    unquoted = re.findall(r"pip install [^\n\"']*\w\[\w", page.read_text())
    assert not unquoted, f"{page.name}: quote the requirement: {unquoted}"


def test_the_readme_starts_with_install_and_quick_start_then_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    headings = re.findall(r"^## (.+)$", readme, re.MULTILINE)
    assert headings[:3] == ["Install", "Quick start", "Two commands"]
    commands = readme.split("## Two commands", 1)[1].split("\n## ", 1)[0]
    assert "```sh\nbin/demo\n```" in commands
    assert "```sh\nbin/test\n```" in commands
    for script in ("bin/demo", "bin/test", "bin/docs"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_every_docs_page_is_in_the_sites_navigation():
    index = doc("index.md")
    navigation = set(re.findall(r"^([a-z][a-z-]*)$", index, re.MULTILINE))
    pages = {page.stem for page in DOCS.glob("*.md")} - {"index"}
    assert pages <= navigation, f"not in the navigation of docs/index.md: {pages - navigation}"
