from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "ANIMA gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import methods  # noqa: F401  (registers every RPC method)
