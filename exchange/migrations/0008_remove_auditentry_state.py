"""The audit log now lives in accounts (accounts 0007): drop its state here, keeping the table."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("exchange", "0007_auditentry_to_accounts_table"),
        ("accounts", "0007_auditentry"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEntry")],
            database_operations=[],
        ),
    ]
