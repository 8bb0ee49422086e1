from django.apps import AppConfig


class MarketConfig(AppConfig):
    name = "market"

    def ready(self):
        from config.httpkit import fastlane
        from config.multidb import public
        from market.fastlane import ROUTE

        fastlane.register(ROUTE)
        # import_products holds a session-level advisory lock on a direct connection.
        public.register_job_connections("job locks", unit="job lock", direct_per_instance=1)
        public.register_temp_tables("market.Product")  # import_products stages rows in a TEMP table
