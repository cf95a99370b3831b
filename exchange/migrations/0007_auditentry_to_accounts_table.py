"""The audit log moves to the accounts app, the lowest of the three, so that accounts no longer imports exchange
(issue 18); this renames its table and its content type (so permissions and admin history follow it).
accounts 0007 then takes over the model's state and exchange 0008 drops it here: no row is copied and none
is lost."""

from django.db import migrations


def move_content_type(apps, schema_editor):  # type: ignore[no-untyped-def]
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.using(schema_editor.connection.alias).filter(
        app_label="exchange", model="auditentry"
    ).update(app_label="accounts")


def move_content_type_back(apps, schema_editor):  # type: ignore[no-untyped-def]
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.using(schema_editor.connection.alias).filter(
        app_label="accounts", model="auditentry"
    ).update(app_label="exchange")


class Migration(migrations.Migration):
    dependencies = [
        ("exchange", "0006_analyst_lookup_usage"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelTable(name="auditentry", table="accounts_auditentry"),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
