"""Money as money: integer cents shown and entered as currency with two decimals, no float."""

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from config.adminkit.money import MoneyField, cents_text


@pytest.mark.parametrize(
    "cents, text", [(0, "0.00"), (5, "0.05"), (1200, "12.00"), (123456789, "1,234,567.89"), (None, "-")]
)
def test_cents_are_shown_with_two_decimals(cents, text):
    assert cents_text(cents) == text


def test_the_largest_bigint_is_exact():
    assert cents_text(9_223_372_036_854_775_807) == "92,233,720,368,547,758.07"  # a float would round


@pytest.mark.parametrize("typed, cents", [("12", 1200), ("12.5", 1250), ("0.01", 1), ("19.99", 1999)])
def test_amounts_are_entered_as_currency_and_stored_as_cents(typed, cents):
    value = MoneyField(max_cents=10**6).clean(typed)
    assert value == cents and isinstance(value, int)


@pytest.mark.parametrize("typed", ["12.345", "-1", "abc", "10000.01", "NaN"])
def test_bad_amounts_are_refused(typed):
    with pytest.raises(ValidationError):
        MoneyField(max_cents=10**6).clean(typed)


def test_a_stored_amount_is_shown_in_the_form_as_currency():
    assert MoneyField().prepare_value(1999) == Decimal("19.99")
    assert MoneyField().prepare_value("19.9") == "19.9"  # what the user typed stays as typed
