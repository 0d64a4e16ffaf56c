"""Leave room in each page of runs_run so the sweep's frequent bookkeeping updates that touch no indexed
column (the lease) can be HOT updates that write no index entries. PostgreSQL only."""

from django.db import migrations


def set_fillfactor(value: int):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE runs_run SET (fillfactor = {value})")

    return apply


class Migration(migrations.Migration):
    dependencies = [("runs", "0008_lean_indexes")]

    operations = [migrations.RunPython(set_fillfactor(80), set_fillfactor(100))]
