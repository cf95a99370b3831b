"""`manage.py demo` creates a known exchange-analyst login: it must refuse to run outside DEBUG (issue 12,
item 12), before it touches the database."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from accounts.models import Platform


@pytest.mark.django_db
@override_settings(DEBUG=False)
def test_demo_refuses_without_debug_before_touching_the_database(tmp_path, django_assert_num_queries):
    with django_assert_num_queries(0), pytest.raises(CommandError) as refused:
        call_command("demo", "--dir", str(tmp_path))
    message = str(refused.value)
    assert "DEBUG" in message and "--i-know-this-is-not-production" in message
    assert refused.value.returncode != 0
    assert not User.objects.filter(username="exchange-analyst").exists()
    assert not Platform.objects.exists()
    assert not any(tmp_path.iterdir())


@override_settings(DEBUG=False)
def test_demo_refusal_is_a_non_zero_exit_from_the_command_line(tmp_path, capsys):
    from graph.management.commands.demo import Command

    with pytest.raises(SystemExit) as exited:
        Command().run_from_argv(["manage.py", "demo", "--dir", str(tmp_path)])
    # No database access is allowed in this test: the refusal comes first.
    assert exited.value.code != 0
    assert "refusing to run the demo without DEBUG" in capsys.readouterr().err


def test_demo_guard_lets_debug_or_the_explicit_flag_through():
    from graph.management.commands.demo import refuse_outside_debug

    refuse_outside_debug(debug=True, confirmed=False)
    refuse_outside_debug(debug=False, confirmed=True)
    with pytest.raises(CommandError):
        refuse_outside_debug(debug=False, confirmed=False)


def test_the_flag_on_the_command_line_is_what_lets_the_guard_through():
    from graph.management.commands.demo import Command, refuse_outside_debug

    parser = Command().create_parser("manage.py", "demo")
    flagged = parser.parse_args(["--i-know-this-is-not-production"])
    plain = parser.parse_args([])
    refuse_outside_debug(debug=False, confirmed=flagged.not_production)
    with pytest.raises(CommandError):
        refuse_outside_debug(debug=False, confirmed=plain.not_production)
