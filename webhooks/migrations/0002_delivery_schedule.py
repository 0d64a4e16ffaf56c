"""Install the django-q2 schedule that sends outbound webhooks. A schedule of its own, not a step of
the sync sweep: a slow or hanging receiver must never delay syncing runs."""

from django.db import migrations

SCHEDULE_NAME = "comfytrack: send webhooks"


def install(apps, schema_editor):
    Schedule = apps.get_model("django_q", "Schedule")
    Schedule.objects.update_or_create(
        name=SCHEDULE_NAME,
        defaults={"func": "webhooks.delivery.deliver_loop", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def uninstall(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name=SCHEDULE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("webhooks", "0001_initial"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(install, uninstall)]
