"""The report outbox moves to the graph app, where its logic and admin are (issue 18); this renames its table
and its content type (so permissions and admin history follow it). graph 0003 then takes over the model's
state and accounts 0006 drops it here: no row is copied and none is lost."""

from django.db import migrations


def move_content_type(apps, schema_editor):  # type: ignore[no-untyped-def]
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.using(schema_editor.connection.alias).filter(
        app_label="accounts", model="reportdelivery"
    ).update(app_label="graph")


def move_content_type_back(apps, schema_editor):  # type: ignore[no-untyped-def]
    content_type = apps.get_model("contenttypes", "ContentType")
    content_type.objects.using(schema_editor.connection.alias).filter(
        app_label="graph", model="reportdelivery"
    ).update(app_label="accounts")


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0004_login_failure_counter"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [
        migrations.AlterModelTable(name="reportdelivery", table="graph_reportdelivery"),
        migrations.RunPython(move_content_type, move_content_type_back),
    ]
