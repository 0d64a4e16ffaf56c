"""RunOutput.organization: copied from the run, so the gallery reads one index range per organization."""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill(apps, schema_editor):
    Run = apps.get_model("runs", "Run")
    RunOutput = apps.get_model("runs", "RunOutput")
    RunOutput.objects.filter(organization=None).update(
        organization=Subquery(Run.objects.filter(pk=OuterRef("run_id")).values("organization_id")[:1])
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0001_initial"), ("runs", "0006_run_unsubmitted_index")]

    operations = [
        migrations.AddField(
            model_name="runoutput",
            name="organization",
            field=models.ForeignKey(
                editable=False,
                null=True,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="accounts.organization",
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="runoutput",
            name="organization",
            field=models.ForeignKey(
                editable=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="+",
                to="accounts.organization",
            ),
        ),
        migrations.AddIndex(
            model_name="runoutput",
            index=models.Index(fields=["organization", "-created", "-code"], name="runs_output_gallery"),
        ),
    ]
