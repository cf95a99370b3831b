"""The audit log's model state, moved from exchange (its table was renamed by exchange 0007)."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0006_remove_reportdelivery_state'),
        ('exchange', '0007_auditentry_to_accounts_table'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='AuditEntry',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('action', models.CharField(db_index=True, max_length=50)),
                        ('actor', models.CharField(help_text="username, API key prefix or 'system'", max_length=150)),
                        ('object_type', models.CharField(blank=True, max_length=50)),
                        ('object_id', models.CharField(blank=True, max_length=64)),
                        ('details', models.JSONField(blank=True, default=dict)),
                        ('platform', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to='accounts.platform')),
                    ],
                    options={
                        'verbose_name_plural': 'audit entries',
                        'ordering': ('-created_at', '-id'),
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
