from django.db import migrations


class Migration(migrations.Migration):
    # Concurrent index builds: a big table keeps taking writes while they run.
    atomic = False

    dependencies = [
        ("market", "0003_admin_at_scale"),
    ]

    operations = [
        # The admin searches a sku by its start: istartswith is UPPER(sku::text) LIKE UPPER('term%'),
        # which a btree on UPPER(sku) with text_pattern_ops serves. The trigram index it replaces
        # read most of the table for any sku-like term (every sku shares "SKU-000"'s trigrams).
        migrations.RunSQL(
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "market_product_sku_upper_prefix" ON "market_product" (UPPER("sku") text_pattern_ops)',  # noqa: E501
            'DROP INDEX CONCURRENTLY IF EXISTS "market_product_sku_upper_prefix"',
        ),
        migrations.RunSQL(
            'DROP INDEX CONCURRENTLY IF EXISTS "market_product_sku_trgm"',
            'CREATE INDEX CONCURRENTLY IF NOT EXISTS "market_product_sku_trgm" ON "market_product" USING gin (UPPER("sku") gin_trgm_ops)',  # noqa: E501
        ),
    ]
