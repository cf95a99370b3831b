"""The report outbox now lives in graph (graph 0003): drop its state here, keeping the table."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_reportdelivery_to_graph_table"),
        ("graph", "0003_reportdelivery"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="ReportDelivery")],
            database_operations=[],
        ),
    ]
