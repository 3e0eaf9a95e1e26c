"""The front page's retry story, clicked through in a real browser (chromium via Playwright).

The demo is served by pytest-django's live server (a real HTTP server in a thread) in demo mode;
the browser signs in as the demo user, sends a payment whose answer it drops, retries it without
and with a key, and the page must show two charges on the left and one on the right. Screenshots
go to .ci/artifacts/browser/ (git-ignored), for a human to look at.

Playwright's sync API runs an event loop in this thread while the browser is open, so the ORM
(which refuses to run inside one) is only used before and after.
"""

from __future__ import annotations

import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import pytest

from gateway.models import Charge
from idempotency.models import IdempotencyRecord
from payments.models import Customer, Payment
from tests.demo.conftest import DATABASES

sync_api = pytest.importorskip(
    "playwright.sync_api",
    reason="playwright is not installed (pip install playwright; it is in the test extra)",
)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / ".ci" / "artifacts" / "browser"
TIMEOUT_MS = 15_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not Path(CHROMIUM).is_file(),
        reason="chromium is not installed (apt-get install chromium; never playwright install)",
    ),
    pytest.mark.django_db(transaction=True, databases=DATABASES),
]


@pytest.fixture
def demo_mode(settings):
    settings.DEBUG = True
    settings.DEMO_MODE = True
    settings.ROOT_URLCONF = "config.urls"


@contextmanager
def browser_page():
    """A chromium page, and the errors its scripts raised or logged."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # Containers and CI runners run as root, where chromium's sandbox cannot start.
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            errors = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on(
                "console",
                lambda message: errors.append(message.text) if message.type == "error" else None,
            )
            yield page, errors
        finally:
            browser.close()


def shot(page, name):
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def test_the_page_plays_the_retry_story(live_server, demo_mode, settings):
    expect = sync_api.expect
    with browser_page() as (page, errors):
        page.goto(f"{live_server.url}/")
        shot(page, "01-front-page")
        if settings.OPENAPI_DOCS:  # drf-spectacular and its sidecar (the demo extra)
            expect(page.get_by_role("link", name="Swagger UI")).to_have_attribute(
                "href", "/api/docs/"
            )
        expect(page.locator("#step-send")).to_be_disabled()

        page.get_by_role("button", name="Sign in as the demo user").click()
        expect(page.locator(".signed-in")).to_contain_text("demo")
        send = page.get_by_role("button", name="1. Send the payment (its answer is lost)")
        expect(send).to_be_enabled()

        send.click()
        expect(page.locator("#without-log")).to_contain_text("no answer: timed out")
        expect(page.locator("#with-log")).to_contain_text("no answer: timed out")
        expect(page.locator("#without-charges")).to_have_text("1")
        expect(page.locator("#with-charges")).to_have_text("1")
        expect(page.locator("#record-state")).to_have_text("completed")
        shot(page, "02-answer-lost")

        page.get_by_role("button", name="2. Retry without a key").click()
        expect(page.locator("#without-log li").nth(1)).to_contain_text("201, a new payment pmt_")
        expect(page.locator("#without-charges")).to_have_text("2")
        expect(page.locator("#without-ledger tr")).to_have_count(2)
        expect(page.locator("#without-verdict")).to_have_text(
            "2 charges for one payment: the customer paid twice."
        )

        page.get_by_role("button", name="3. Retry with the same key").click()
        expect(page.locator("#with-log li").nth(1)).to_contain_text(
            "201, Idempotent-Replayed: true: payment pmt_"
        )
        expect(page.locator("#with-charges")).to_have_text("1")
        expect(page.locator("#with-ledger tr")).to_have_count(1)
        expect(page.locator("#record")).to_contain_text("POST /payments")
        expect(page.locator("#record")).to_contain_text("201")
        expect(page.locator("#with-verdict")).to_contain_text("1 charge")
        expect(page.locator("#story-error")).to_be_empty()
        shot(page, "03-retried")
        key = page.locator("#key").inner_text()
        # The replay carries the payment the lost answer carried: the one the record stored.
        [replayed_id] = re.findall(r"pmt_\w+", page.locator("#with-log li").nth(1).inner_text())
        expect(page.locator("#record")).to_contain_text(f'"paymentId": "{replayed_id}"')

        page.get_by_role("button", name="Start over").click()
        expect(page.locator("#with-charges")).to_have_text("0")
        expect(send).to_be_enabled()
        assert errors == []

    # What the page showed is what the gateway and the shop hold (the browser is closed now).
    [customer] = Customer.objects.filter(customer_id__startswith="cust_live_")
    charges = Charge.objects.filter(source=customer.customer_id)
    assert charges.filter(idempotency_key__isnull=True).count() == 2
    assert charges.filter(idempotency_key__isnull=False).count() == 1
    assert Payment.objects.filter(customer=customer).count() == 3
    assert IdempotencyRecord.objects.get(key=key).response_status == 201


def test_outside_demo_mode_the_page_explains_and_offers_no_sign_in(live_server, settings):
    settings.ROOT_URLCONF = "config.urls"  # DEBUG off, DEMO_MODE off: the production settings
    expect = sync_api.expect
    with browser_page() as (page, errors):
        page.goto(f"{live_server.url}/")
        shot(page, "04-production")

        expect(page.locator("#story")).to_contain_text("runs in demo mode only")
        expect(page.get_by_role("button", name="Sign in as the demo user")).to_have_count(0)
        expect(page.locator("#step-send")).to_be_disabled()
        assert errors == []
