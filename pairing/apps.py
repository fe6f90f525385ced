from django.apps import AppConfig


class PairingConfig(AppConfig):
    name = "pairing"
    verbose_name = "Devices and pairing"
    default_auto_field = "django.db.models.BigAutoField"

