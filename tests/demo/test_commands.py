"""issue_token, load_demo_data, retry_story, and the commands bin/demo runs."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command, get_commands
from rest_framework.authtoken.models import Token

from gateway.models import Charge
from idempotency.models import IdempotencyRecord
from orders.models import Order, Product
from orders.tasks import send_order_confirmation
from payments.management.commands import retry_story
from payments.models import Customer, Payment
from payments.story import STORY_CUSTOMER, STORY_SKU, Story, Tally
from tests.demo.conftest import DATABASES
from tests.demo.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=DATABASES)

BIN_DEMO = Path(__file__).resolve().parents[2] / "bin" / "demo"
TASK_SCOPE = "celery:orders.tasks.send_order_confirmation"


def run(*args):
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_issue_token_creates_the_user_and_prints_the_token_alone():
    output = run("issue_token", "u1")

    user = get_user_model().objects.get(username="u1")
    assert output == f"{Token.objects.get(user=user).key}\n"
    assert re.fullmatch(r"[0-9a-f]{40}\n", output)
    assert user.email == "u1@example.com"
    assert not user.has_usable_password()


def test_issue_token_is_stable_and_keeps_an_existing_user():
    existing = UserFactory(username="u2", email="two@example.com")

    first, second = run("issue_token", "u2"), run("issue_token", "u2")

    assert first == second == f"{existing.auth_token.key}\n"
    existing.refresh_from_db()
    assert existing.email == "two@example.com"


def test_issue_token_takes_an_email_for_a_new_user():
    run("issue_token", "carol", "--email", "carol@shop.test")

    assert get_user_model().objects.get(username="carol").email == "carol@shop.test"


@pytest.mark.parametrize("username", ["", "   ", "no spaces allowed!", "tab\there", "x" * 151])
def test_issue_token_refuses_a_username_django_would_not_accept(username):
    with pytest.raises(CommandError, match="Invalid username"):
        run("issue_token", username)

    assert not get_user_model().objects.exists()
    assert not Token.objects.exists()


def test_issue_token_refuses_an_invalid_email():
    with pytest.raises(CommandError, match="Invalid email 'not an email'"):
        run("issue_token", "dave", "--email", "not an email")

    assert not get_user_model().objects.exists()


def test_issue_token_accepts_what_djangos_username_validator_accepts():
    run("issue_token", "ada.lovelace+api@shop-1_x")

    assert get_user_model().objects.get().username == "ada.lovelace+api@shop-1_x"


def test_load_demo_data_is_idempotent_and_leaves_the_demos_state_alone():
    assert run("load_demo_data") == "Demo data: 4 created, 0 already there.\n"
    Product.objects.filter(sku="laptop-13").update(stock=1)  # someone ordered

    assert run("load_demo_data") == "Demo data: 0 created, 4 already there.\n"

    assert set(Customer.objects.values_list("customer_id", flat=True)) == {"cust_123", "cust_456"}
    assert dict(Product.objects.values_list("sku", "stock")) == {"laptop-13": 1, "mouse-1": 100}


def test_the_story_counts_what_each_way_produced():
    scenarios = {scenario.title: scenario for scenario in Story().play()}

    lost_payment = scenarios["payment: response lost, retried"]
    assert lost_payment.without == Tally(2, 2, 0, 0, 0, ("(201, lost)", "201"))
    assert lost_payment.with_key == Tally(1, 1, 0, 0, 0, ("(201, lost)", "201 replayed"))
    crashed_payment = scenarios["payment: crash after the charge, retried"]
    assert crashed_payment.without == Tally(2, 1, 0, 0, 0, ("500", "201"))
    assert crashed_payment.with_key == Tally(1, 1, 0, 0, 0, ("500", "201"))
    lost_order = scenarios["order: response lost, retried"]
    assert lost_order.without == Tally(0, 0, 2, 2, 2, ("(201, lost)", "201"))
    assert lost_order.with_key == Tally(0, 0, 1, 1, 1, ("(201, lost)", "201 replayed"))
    crashed_order = scenarios["order: crash before the commit, retried"]
    assert crashed_order.without == Tally(0, 0, 1, 1, 1, ("500", "201"))
    assert crashed_order.with_key == Tally(0, 0, 1, 1, 1, ("500", "201"))
    redelivered = scenarios["order email: message delivered twice"]
    assert redelivered.without == Tally(0, 0, 0, 0, 2, ("emailed", "emailed"))
    assert redelivered.with_key == Tally(0, 0, 0, 0, 1, ("emailed", "no email"))
    # The counts are the database's: 6 charges, 5 payments, 5 orders placed in all, and the two
    # orders whose confirmation the last scenario delivered.
    assert Charge.objects.filter(source=STORY_CUSTOMER).count() == 6
    assert (Payment.objects.count(), Order.objects.count()) == (5, 7)
    assert Product.objects.get(sku=STORY_SKU).stock == 95
    # Every order's confirmation went through the guard (keyed by its order id), except the
    # one the story delivered to the task's bare body.
    records = dict(IdempotencyRecord.objects.filter(scope=TASK_SCOPE).values_list("key", "state"))
    assert set(records.values()) == {"completed"}
    orders = set(Order.objects.values_list("order_id", flat=True))
    assert len(orders - set(records)) == 1 and set(records) <= orders


def test_the_story_runs_its_tasks_in_process_even_with_a_broker_configured():
    # Its emails are counted in this process's outbox: were the order emails published to the
    # broker (here an in-memory one nobody consumes), the story would count none.
    celery = send_order_confirmation.app
    saved = celery.conf.task_always_eager, celery.conf.broker_url
    celery.conf.update(task_always_eager=False, broker_url="memory://")
    try:
        scenarios = {scenario.title: scenario for scenario in Story().play()}
        assert celery.conf.task_always_eager is False  # given back as it was
    finally:
        celery.conf.update(task_always_eager=saved[0], broker_url=saved[1])
        celery.close()  # drop the connection pool made for memory://

    assert scenarios["order: response lost, retried"].without.emails == 2
    assert scenarios["order email: message delivered twice"].with_key.emails == 1


def test_the_story_command_prints_the_table_and_can_run_again(settings):
    settings.DEMO_FAULTS = False  # the story turns faults on for its own requests only

    first = run("retry_story")
    second = run("retry_story")

    for output in (first, second):
        rows = {
            line.split("|")[0].strip(): [cell.split() for cell in line.split("|")[1:]]
            for line in output.splitlines()
            if line.count("|") == 2
        }
        assert rows["payment: response lost, retried"] == [
            ["2", "2", "0", "0", "0"],
            ["1", "1", "0", "0", "0"],
        ]
        assert rows["order: response lost, retried"] == [
            ["0", "0", "2", "-2", "2"],
            ["0", "0", "1", "-1", "1"],
        ]
        assert rows["order email: message delivered twice"] == [
            ["0", "0", "0", "0", "2"],
            ["0", "0", "0", "0", "1"],
        ]
        assert "with: (201, lost), 201 replayed" in output
        assert "without: emailed, emailed     with: emailed, no email" in output


def test_the_readme_prints_the_storys_table_as_the_command_does():
    output = run("retry_story").splitlines()
    table = [line for line in output if "|" in line or line.startswith("---")]
    readme = (BIN_DEMO.parents[1] / "README.md").read_text()
    block = readme.split("manage.py retry_story\n```\n```\n", 1)[1].split("```", 1)[0]

    assert block.splitlines() == table


def test_the_story_points_only_at_files_in_the_repository():
    output = retry_story.Command.help + run("retry_story")
    named = re.findall(r"[\w./-]+\.(?:txt|md|py)\b", output)

    assert "docs/guarantees.md" in named
    assert [name for name in named if not (BIN_DEMO.parents[1] / name).is_file()] == []


def test_bin_demo_runs_only_commands_that_exist():
    commands = re.findall(r"manage\.py (\w+)", BIN_DEMO.read_text())

    assert {"migrate", "load_demo_data", "issue_token", "runserver"} <= set(commands)
    assert set(commands) <= set(get_commands())


def test_bin_demo_serves_in_demo_mode_and_names_the_front_page():
    script = BIN_DEMO.read_text()

    assert re.search(r"^export DEBUG=true DEMO_MODE=true ", script, re.MULTILINE)
    assert "Open http://127.0.0.1:$port/ " in script
