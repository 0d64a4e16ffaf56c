"""Archive outputs in a schedule of its own, beside the sync loop."""

from django.db import migrations

SCHEDULE_NAME = "comfytrack: archive outputs"


def install(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "runs.tasks.archive_loop", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("runs", "0004_run_search_text_keyset_indexes")]
    operations = [migrations.RunPython(install, uninstall)]
