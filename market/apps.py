from django.apps import AppConfig


class MarketConfig(AppConfig):
    name = "market"

    def ready(self):
        from config.httpkit import fastlane
        from market.fastlane import ROUTE

        fastlane.register(ROUTE)
