from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights"

    def ready(self) -> None:
        from insights.costing import price_finished_runs
        from runs.changes import on_run_changes

        # A finished run is costed in the transaction that finished it (runs.changes).
        on_run_changes(price_finished_runs)
