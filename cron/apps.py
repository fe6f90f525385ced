from django.apps import AppConfig


class CronConfig(AppConfig):
    name = "cron"
    verbose_name = "Scheduled jobs"
    default_auto_field = "django.db.models.BigAutoField"

