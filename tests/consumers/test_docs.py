"""docs/celery.md stays true: every test it cites exists, and it documents every option."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = (ROOT / "docs" / "celery.md").read_text()
CITED = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")
SOURCE = (ROOT / "idempotency" / "contrib" / "celery.py").read_text()


def test_every_cited_test_exists():
    cited = CITED.findall(PAGE)
    assert len(cited) >= 10
    missing = [
        f"{path}::{name}"
        for path, name in cited
        if not (ROOT / path).is_file()
        or not re.search(rf"^def {name}\(", (ROOT / path).read_text(), re.MULTILINE)
    ]
    assert missing == []


def test_every_option_of_the_celery_task_is_documented():
    # Read from the source: Celery may not be installed where this runs.
    options = re.findall(r"^    (idempotency_\w+):", SOURCE, re.MULTILINE)
    assert len(options) == 6
    documented = re.findall(r"^\| `(idempotency_\w+)` \|", PAGE, re.MULTILINE)
    assert documented == options
