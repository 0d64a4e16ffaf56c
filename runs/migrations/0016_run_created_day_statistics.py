from django.db import migrations

# The stats page groups a window's runs by day of creation, `(created AT TIME ZONE 'UTC')::date` (TruncDate
# under TIME_ZONE = "UTC"). Without statistics on that expression PostgreSQL guesses a group per row and
# sorts the whole window to group it (~0.5 s of a million-run window, spilling to disk); with them it
# expects the few hundred groups there are and hashes. Other databases have no such statistics.
CREATE = "CREATE STATISTICS IF NOT EXISTS runs_run_created_day ON ((created AT TIME ZONE 'UTC')::date) FROM runs_run"
DROP = "DROP STATISTICS IF EXISTS runs_run_created_day"


def create(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)
        schema_editor.execute("ANALYZE runs_run")


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0015_runoutput_content_verified"),
    ]

    operations = [migrations.RunPython(create, drop)]
