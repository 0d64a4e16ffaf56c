from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"

    def ready(self) -> None:
        from alerts.recording import record_run_changes
        from runs.changes import on_run_changes

        # Incidents and events are written in the transaction of the status change that caused them.
        on_run_changes(record_run_changes)
