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
        # How many names hold a word: with the default statistics (100 values) the planner guessed
        # 533 names of a million for "backpack" (31,172 hold it), sorted them all by sku and read
        # 11,677 pages (1.7-5 s); with 1,000 it guesses 28,645 and walks the sku index instead
        # (1 ms), while a rare word still goes through the trigram index.
        migrations.RunSQL(
            'ALTER INDEX "market_product_name_trgm" ALTER COLUMN 1 SET STATISTICS 1000',
            'ALTER INDEX "market_product_name_trgm" ALTER COLUMN 1 SET STATISTICS -1',
        ),
        migrations.RunSQL('ANALYZE "market_product"', migrations.RunSQL.noop),
    ]
