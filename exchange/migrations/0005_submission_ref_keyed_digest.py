"""Submissions get an opaque reference and a keyed body digest (issue 12).

Existing rows are converted without their bodies (the exchange never kept them): the old digest was
SHA-256(body), and the new one is HMAC(pepper, SHA-256(body)), so new = HMAC(pepper, old). Their stored
first answer names the new reference instead of the sequential id, so a retry after the upgrade replays it.
"""

import hashlib
import hmac
import secrets

from django.conf import settings
from django.db import migrations, models

import exchange.models

UNKEYED = 0  # digest_version of a row whose body_digest is still a plain SHA-256


def key_digests_and_give_refs(apps, schema_editor):
    Submission = apps.get_model("exchange", "Submission")
    version = max(settings.EXCHANGE_PEPPERS)
    pepper = settings.EXCHANGE_PEPPERS[version]
    rows = list(Submission.objects.filter(digest_version=UNKEYED).only("id", "body_digest", "response"))
    for row in rows:
        row.ref = "sub_" + secrets.token_hex(8)
        row.body_digest = hmac.new(pepper, row.body_digest.encode("ascii"), hashlib.sha256).hexdigest()
        row.digest_version = version
        if isinstance(row.response, dict) and "submission" in row.response:
            row.response = {**row.response, "submission": row.ref}
    Submission.objects.bulk_update(rows, ["ref", "body_digest", "digest_version", "response"], batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("exchange", "0004_indicator_holders"),
    ]

    operations = [
        migrations.AddField(
            model_name="submission",
            name="digest_version",
            field=models.PositiveSmallIntegerField(default=UNKEYED, help_text="Pepper version keying body_digest."),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="submission",
            name="ref",
            field=models.CharField(editable=False, max_length=20, null=True),
        ),
        migrations.RunPython(key_digests_and_give_refs, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="submission",
            name="ref",
            field=models.CharField(
                default=exchange.models.new_submission_ref, editable=False, max_length=20, unique=True
            ),
        ),
    ]
