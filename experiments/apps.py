from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    name = "experiments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Connects the receivers that close websockets after a logout or an account change; the
        # import is here because signal modules may only load once the app registry is ready.
        from .live import signals  # noqa: F401
