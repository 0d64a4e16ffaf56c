from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "insights"
    verbose_name = "Insights"

    def ready(self) -> None:
        from insights.costing import cost_finishing_runs
        from runs.changes import on_runs_finishing

        # A finished run is costed by the UPDATE that finishes it (runs.changes).
        on_runs_finishing(cost_finishing_runs)
