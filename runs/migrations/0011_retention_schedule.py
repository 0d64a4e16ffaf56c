"""Install the daily django-q2 schedule that applies each organization's retention limit (comfytrack.retention)."""

from django.db import migrations

SCHEDULE_NAME = "comfytrack: prune by retention"


def install(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "comfytrack.retention.prune_retention", "schedule_type": "D", "repeats": -1},
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("runs", "0010_loop_turn"), ("accounts", "0002_organization_retention_days")]
    operations = [migrations.RunPython(install, uninstall)]
