"""Admin for the market. The router puts every save in the market database.

Orders and transfers are made by the services (which lock stock and balances),
so here they are read-only but for an order's status; balances are opening
balances only: money moves through transfers, never through a form.
"""

from django import forms
from django.contrib import admin

from audit.admin import AuditHistoryAdminMixin, ReadOnlyAdminMixin
from config.adminkit.money import MoneyAdminMixin, MoneyField, money_column
from config.adminkit.people import PeopleAdminMixin, person_column
from config.adminkit.scale import ScaleAdminMixin
from market.models import MAX_CENTS, MAX_PRICE_CENTS, Account, Order, OrderLine, Product, Transfer


class InStockFilter(admin.SimpleListFilter):
    title = "stock"
    parameter_name = "in_stock"

    def lookups(self, request, model_admin):
        return [("yes", "In stock"), ("no", "Out of stock")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(stock__gt=0)
        if self.value() == "no":
            return queryset.filter(stock=0)
        return queryset


class ProductForm(forms.ModelForm):
    """Orders change stock while this form is open. The form carries the stock the
    user saw; an untouched stock keeps what orders left, an edited one that went
    stale is refused. The admin validates and saves in one transaction on the
    market database, so the row lock taken here lasts until the save."""

    stock_seen = forms.IntegerField(widget=forms.HiddenInput, required=False)

    price_cents = MoneyField(label="Price", max_cents=MAX_PRICE_CENTS, help_text="In currency units: 12.00")

    class Meta:
        model = Product
        fields = ["sku", "name", "price_cents", "stock"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.fields["stock_seen"].initial = self.instance.stock

    def clean(self):
        cleaned = super().clean()
        seen = cleaned.get("stock_seen")
        if not self.instance.pk or seen is None or "stock" not in cleaned:
            return cleaned
        locked = Product.objects.select_for_update().filter(pk=self.instance.pk)
        current = locked.values_list("stock", flat=True).first()
        if current is None or current == seen:
            return cleaned
        if cleaned["stock"] == seen:
            cleaned["stock"] = current
        else:
            self.data = self.data.copy()
            self.data["stock_seen"] = current  # a second submit means "yes, this number"
            self.add_error("stock", f"stock changed to {current} since this page was loaded; check it and save again")
        return cleaned


@admin.register(Product)
class ProductAdmin(ScaleAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    form = ProductForm
    price = money_column("price_cents", "price")
    list_display = ["sku", "name", "price", "stock", "updated"]
    # A sku is searched by its start (a btree on UPPER(sku), migration 0004: every sku shares the
    # trigrams of "SKU-000..."), a name by any part (a trigram GIN index, migration 0003).
    search_fields = ["^sku", "name"]
    list_filter = [InStockFilter]  # out of stock: a partial index
    ordering = ["sku"]
    sortable_by = ["sku"]  # the one indexed order: any other sorts a million rows
    readonly_fields = ["created", "updated"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    unit_price = money_column("unit_price_cents", "unit price")
    fields = ["product", "quantity", "unit_price"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("product")  # not a query per line

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(ScaleAdminMixin, PeopleAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    people = ("buyer_id",)
    buyer = person_column("buyer_id", "buyer")
    total = money_column("total_cents", "total")
    list_display = ["id", "buyer", "status", "total", "created_at"]
    # Fixed choices (the status values, date ranges), each served by an index in id order;
    # no date_hierarchy: its year and month links are a DISTINCT over the whole table.
    list_filter = ["status", ("created_at", admin.DateFieldListFilter)]
    id_search_fields = ("id", "buyer_id")  # and the buyer's username (PeopleAdminMixin)
    ordering = ["-id"]
    sortable_by = ["id", "buyer"]
    readonly_fields = ["buyer", "total", "created_at"]
    fields = ["buyer", "status", "total", "created_at"]
    inlines = [OrderLineInline]

    def has_add_permission(self, request):
        return False  # only order_create takes stock correctly

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(ScaleAdminMixin, PeopleAdminMixin, MoneyAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    people = ("owner_id",)
    money_fields = {"balance_cents": MAX_CENTS}
    owner = person_column("owner_id", "owner")
    balance = money_column("balance_cents", "balance")
    list_display = ["id", "owner", "balance", "created_at"]
    id_search_fields = ("id", "owner_id")  # and the owner's username (PeopleAdminMixin)
    ordering = ["-id"]
    sortable_by = ["id", "owner"]
    fields = ["balance_cents", "owner_id", "created_at"]

    def get_fields(self, request, obj=None):
        # A new account: an opening balance typed as currency; afterwards money moves only by transfers.
        if obj is None:
            return ["balance_cents", "owner_id", "created_at"]
        return ["balance", "owner_id", "owner", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        own = ["created_at"] if obj is None else ["balance", "owner", "created_at"]
        return [*own, *super().get_readonly_fields(request, obj)]

    def has_delete_permission(self, request, obj=None):
        # Deleting a funded account would destroy money; no bulk delete either.
        return obj is not None and obj.balance_cents == 0 and super().has_delete_permission(request, obj)


@admin.register(Transfer)
class TransferAdmin(ScaleAdminMixin, PeopleAdminMixin, ReadOnlyAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    """Transfers only ever come from the service (locks, idempotency, invariants)."""

    people = ("requester_id",)
    requester = person_column("requester_id", "requester")
    amount = money_column("amount_cents", "amount")
    list_display = ["id", "from_account_id", "to_account_id", "amount", "requester", "created_at"]
    # Exact ids the primary and foreign-key indexes serve (no index would serve a substring
    # search of a key on a hot write path's table), and the requester's username.
    id_search_fields = ("id", "from_account_id", "to_account_id")
    ordering = ["-id"]
    sortable_by = ["id"]
