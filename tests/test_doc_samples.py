"""Every ```python block of the docs, the README and the package description runs.

The blocks of one page run in order in one namespace, as a reader would paste them into one
module, inside the test project (its settings, apps and a test database). A block that assigns
``IDEMPOTENCY`` is a settings fragment: the library's system checks must accept it. A block
that assigns ``INSTALLED_APPS`` may name only apps the test project installs. Signal receivers
and admin registrations a page makes are undone after it.

The opt-out, for a block that only makes sense inside a project of its own: the line
``<!-- sample: not run (why) -->`` directly above the fence (hidden on GitHub and on the site).
Use it sparingly: settings fragments, views and function definitions all run here.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from types import ModuleType

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.checks import run_checks
from django.test import override_settings

from idempotency import signals

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "PYPI.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<lang>[\w{}-]*)[^\n]*\n(?P<body>.*?)^(?P=indent)```",
    re.MULTILINE | re.DOTALL,
)
NO_URLS = ModuleType("no_urls")
NO_URLS.urlpatterns = []  # type: ignore[attr-defined]
NOT_RUN = re.compile(r"<!-- sample: not run \(.+\) -->\s*$")


def samples(page):
    """(line number, code, opted out) for each ```python block of ``page``."""
    text = page.read_text()
    for match in FENCE.finditer(text):
        if match["lang"] != "python":
            continue
        line = text.count("\n", 0, match.start()) + 1
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        yield line, textwrap.dedent(match["body"]), bool(NOT_RUN.search(before))


def runnable(page):
    return [(line, code) for line, code, skipped in samples(page) if not skipped]


def uses_spectacular(page):
    return any("drf_spectacular" in code for _, code in runnable(page))


@pytest.fixture
def isolated_registries():
    """Undo what a page registers: signal receivers and admin registrations."""
    receivers = {name: list(signal.receivers) for name, signal in signals.OUTCOMES.items()}
    registry = dict(admin.site._registry)
    yield
    for name, signal in signals.OUTCOMES.items():
        with signal.lock:
            signal.receivers[:] = receivers[name]
            signal.sender_receivers_cache.clear()
    admin.site._registry.clear()
    admin.site._registry.update(registry)


def check_settings_fragment(namespace, where):
    if "IDEMPOTENCY" in namespace:
        # Without the test project's URLs: some of its views hold deliberately short leases.
        with override_settings(IDEMPOTENCY=namespace["IDEMPOTENCY"], ROOT_URLCONF=NO_URLS):
            problems = [m for m in run_checks() if m.id and m.id.startswith("idempotency.")]
        assert not problems, f"{where}: the settings fragment fails the checks: {problems}"
    if "INSTALLED_APPS" in namespace:
        named = [app for app in namespace["INSTALLED_APPS"] if isinstance(app, str)]
        missing = set(named) - set(settings.INSTALLED_APPS)
        assert not missing, f"{where}: INSTALLED_APPS names {missing}, unknown to the test project"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "page",
    [
        # A page whose samples use drf-spectacular runs where the optional package is installed.
        pytest.param(page, marks=[pytest.mark.spectacular] * uses_spectacular(page))
        for page in PAGES
    ],
    ids=lambda page: page.relative_to(ROOT).as_posix(),
)
@pytest.mark.usefixtures("isolated_registries")
def test_every_python_sample_of_the_page_runs(page):
    namespace = {"__name__": f"docs_sample_{page.stem.replace('-', '_')}"}
    for line, code in runnable(page):
        where = f"{page.relative_to(ROOT)}:{line}"
        before = {name: namespace.get(name) for name in ("IDEMPOTENCY", "INSTALLED_APPS")}
        # Padded so that a traceback names the line of the page.
        exec(compile("\n" * line + code, str(page), "exec"), namespace)  # noqa: S102
        assigned = {
            name: namespace[name]
            for name in ("IDEMPOTENCY", "INSTALLED_APPS")
            if name in namespace and namespace[name] is not before[name]
        }
        check_settings_fragment(assigned, where)


def test_the_samples_are_found_and_opting_out_stays_rare():
    found = {page.name: list(samples(page)) for page in PAGES}
    assert len(found["README.md"]) >= 2
    assert len(found["PYPI.md"]) >= 2
    total = sum(len(blocks) for blocks in found.values())
    skipped = sum(skipped for blocks in found.values() for _, _, skipped in blocks)
    assert total >= 20
    assert skipped <= total // 10, "more than one sample in ten opts out of running"


def test_a_failing_sample_fails_the_page(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```python\nx = 1\n```\n\n"
        "<!-- sample: not run (needs a project) -->\n```python\nraise SystemExit\n```\n\n"
        "```python\nassert x == 2\n```\n"
    )
    blocks = runnable(page)
    assert [line for line, _ in blocks] == [1, 10]
    namespace = {}
    exec(blocks[0][1], namespace)
    with pytest.raises(AssertionError):
        exec(blocks[1][1], namespace)
