from django.apps import AppConfig


class ChaosConfig(AppConfig):
    name = "chaos.app"
    label = "chaos"
    verbose_name = "tandem's chaos runner"
