from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from exchange.hashing import keyed_token
from exchange.models import Indicator, KeyState
from tests.builders import seller, submit, th

pytestmark = pytest.mark.django_db

V2 = b"second-pepper-version-32-bytes-long!!"


def test_rotation_rekeys_by_chaining_and_lookups_still_match(acme, bazaar, settings):
    submit(bazaar.client(), seller("baz-1", ("email", "ring@x.com")))
    settings.EXCHANGE_PEPPERS = {**settings.EXCHANGE_PEPPERS, 2: V2}
    out = StringIO()
    call_command("rotate_pepper", stdout=out, stderr=StringIO())
    assert "Re-keyed 1 indicators and 0 appeal documents from pepper version 1 to 2" in out.getvalue()
    indicator = Indicator.objects.get()
    assert indicator.key_version == 2
    assert indicator.token == keyed_token("email", th("email", "ring@x.com"), settings.EXCHANGE_PEPPERS, 2)
    assert KeyState.objects.get().current_version == 2
    response = acme.client().post(
        "/api/v1/lookups/",
        {"indicators": [{"kind": "email", "hash": th("email", "ring@x.com")}]},
        format="json",
    )
    assert response.json()["results"][0]["match"] is True
    # New submissions of the same value land on the same (re-keyed) indicator.
    submit(acme.client(), seller("acme-1", ("email", "ring@x.com")))
    assert Indicator.objects.count() == 1
    call_command("rotate_pepper", stdout=out)
    assert "nothing to do" in out.getvalue()


def test_rotation_refuses_when_an_old_pepper_was_dropped(settings):
    settings.EXCHANGE_PEPPERS = {2: V2}
    with pytest.raises(CommandError, match="must keep version 1"):
        call_command("rotate_pepper", stdout=StringIO())
