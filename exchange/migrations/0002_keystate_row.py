from django.conf import settings
from django.db import migrations

from exchange.hashing import default_key_version


def create_state(apps, schema_editor):  # type: ignore[no-untyped-def]
    apps.get_model("exchange", "KeyState").objects.get_or_create(
        id=1, defaults={"current_version": default_key_version(settings.EXCHANGE_PEPPERS)}
    )


class Migration(migrations.Migration):
    dependencies = [("exchange", "0001_initial")]
    operations = [migrations.RunPython(create_state, migrations.RunPython.noop)]
