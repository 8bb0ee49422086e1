"""Money as money in the admin: amounts stored as integer cents are shown and entered as
currency with two decimals (`1,234.50`), through Decimal only (no float on the way).

    class AccountAdmin(MoneyAdminMixin, admin.ModelAdmin):
        money_fields = {"balance_cents": MAX_CENTS}
        balance = money_column("balance_cents", "balance")
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError

CENT = Decimal("0.01")


def cents_text(cents: int | None) -> str:
    """12345 -> '123.45'; thousands grouped: 123456789 -> '1,234,567.89'."""
    if cents is None:
        return "-"
    return format(Decimal(cents).scaleb(-2), ",.2f")


def money_column(field: str, description: str):
    @admin.display(description=description, ordering=field)
    def column(self, obj):
        return cents_text(getattr(obj, field))

    return column


class MoneyField(forms.DecimalField):
    """Entered as `12.00` (at most two decimals), cleaned to integer cents."""

    def __init__(self, *, min_cents: int | None = 0, max_cents: int | None = None, **kwargs):
        kwargs.setdefault("decimal_places", 2)
        kwargs.setdefault("max_digits", 21)  # bigint cents: 19 digits, and two decimals
        if min_cents is not None:
            kwargs.setdefault("min_value", Decimal(min_cents).scaleb(-2))
        if max_cents is not None:
            kwargs.setdefault("max_value", Decimal(max_cents).scaleb(-2))
        super().__init__(**kwargs)
        self.widget.attrs.setdefault("step", "0.01")

    def prepare_value(self, value):
        if isinstance(value, int) and not isinstance(value, bool):
            return Decimal(value).scaleb(-2).quantize(CENT)  # the model's cents, shown as currency
        return value

    def has_changed(self, initial, data):
        try:
            return self.clean(data) != initial
        except ValidationError:
            return True

    def clean(self, value):
        amount = super().clean(value)
        if amount is None:
            return None
        try:
            return int((amount / CENT).to_integral_exact())
        except InvalidOperation:  # pragma: no cover - decimal_places=2 refused it already
            raise ValidationError("Enter an amount with at most two decimals.") from None


class MoneyAdminMixin:
    """`money_fields`: {the model's integer-cents field: its largest value}, entered as currency."""

    money_fields: dict[str, int] = {}

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in self.money_fields:
            label = kwargs.pop("label", None) or db_field.verbose_name.removesuffix(" cents")
            return MoneyField(
                max_cents=self.money_fields[db_field.name],
                label=label[:1].upper() + label[1:],
                required=not db_field.blank,
                help_text=kwargs.pop("help_text", "") or "In currency units, two decimals: 12.00",
            )
        return super().formfield_for_dbfield(db_field, request, **kwargs)
