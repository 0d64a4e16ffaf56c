from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"

    def ready(self) -> None:
        # Start the background loops within seconds of a q cluster starting (comfytrack/qcluster.py).
        from comfytrack import qcluster

        qcluster.connect()
