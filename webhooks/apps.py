from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Outbound webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The engine announces run changes through its hook and never imports webhooks (runs.changes).
        from runs.changes import on_run_changes
        from webhooks.emit import enqueue_run_changes

        on_run_changes(enqueue_run_changes)
