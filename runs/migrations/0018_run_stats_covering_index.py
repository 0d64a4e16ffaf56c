from django.db import migrations

# The stats page's queries (runs.stats) read these columns of an organization's runs created in a window.
# With them all in one index (~130 bytes a run against ~550 for the row), PostgreSQL answers those
# queries with an index-only scan instead of a scan of the rows. A status change writes a new entry in
# every index anyway; the sweep's lease columns are not among these, so its HOT updates stay HOT. Built
# concurrently so the sync engine's writes go on while it builds. PostgreSQL only: elsewhere the
# statistics scan the rows.
CREATE = (
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS runs_run_org_stats ON runs_run (organization_id, created) "
    "INCLUDE (provider_id, status, cost, created_source, queued, queued_source, started, started_source, "
    "finished, finished_source)"
)
DROP = "DROP INDEX CONCURRENTLY IF EXISTS runs_run_org_stats"
# A concurrent build that was interrupted (a cancelled migration, a lost connection) leaves the index
# behind, marked invalid: never used, yet kept up by every write, and IF NOT EXISTS would skip it.
IS_INVALID = "SELECT NOT indisvalid FROM pg_index WHERE indexrelid = to_regclass('runs_run_org_stats')"


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(IS_INVALID)
        row = cursor.fetchone()
    if row is not None and row[0]:
        schema_editor.execute(DROP)
    schema_editor.execute(CREATE)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("runs", "0017_run_graph_due"),
    ]

    operations = [migrations.RunPython(create, drop)]
