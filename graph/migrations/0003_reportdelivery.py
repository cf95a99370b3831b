"""The report outbox's model state, moved from accounts (its table was renamed by accounts 0005)."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0005_reportdelivery_to_graph_table'),
        ('graph', '0002_pending_merge'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='ReportDelivery',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('kind', models.CharField(choices=[('platform', 'platform report'), ('digest', "exchange analysts' digest")], max_length=10)),
                        ('recipient', models.EmailField(max_length=254)),
                        ('period_start', models.DateTimeField(blank=True, help_text='Empty: since the beginning.', null=True)),
                        ('period_end', models.DateTimeField()),
                        ('subject', models.CharField(max_length=250)),
                        ('body_text', models.TextField()),
                        ('body_html', models.TextField()),
                        ('message_id', models.CharField(max_length=250, unique=True)),
                        ('status', models.CharField(choices=[('pending', 'pending'), ('sending', 'sending'), ('sent', 'sent'), ('failed', 'failed')], db_index=True, default='pending', max_length=10)),
                        ('attempts', models.PositiveSmallIntegerField(default=0)),
                        ('next_attempt_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                        ('claimed_at', models.DateTimeField(blank=True, null=True)),
                        ('claimed_by', models.CharField(blank=True, max_length=100)),
                        ('sent_at', models.DateTimeField(blank=True, null=True)),
                        ('last_error', models.TextField(blank=True)),
                        ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                        ('platform', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='report_deliveries', to='accounts.platform')),
                        ('user', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='+', to=settings.AUTH_USER_MODEL)),
                    ],
                    options={
                        'verbose_name': 'report delivery',
                        'verbose_name_plural': 'report deliveries',
                        'ordering': ('-created_at', '-id'),
                        'constraints': [models.UniqueConstraint(condition=models.Q(('kind', 'platform'), ('period_start__isnull', False)), fields=('platform', 'recipient', 'period_start'), name='report_once_per_period'), models.UniqueConstraint(condition=models.Q(('kind', 'platform'), ('period_start__isnull', True)), fields=('platform', 'recipient'), name='report_first_once'), models.UniqueConstraint(condition=models.Q(('kind', 'digest'), ('period_start__isnull', False)), fields=('user', 'period_start'), name='digest_once_per_period'), models.UniqueConstraint(condition=models.Q(('kind', 'digest'), ('period_start__isnull', True)), fields=('user',), name='digest_first_once')],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
