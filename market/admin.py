"""Admin for the market. The router puts every save in the market database.

Orders and transfers are made by the services (which lock stock and balances),
so here they are read-only but for an order's status; balances are opening
balances only: money moves through transfers, never through a form.
"""

from django import forms
from django.contrib import admin

from audit.admin import AuditHistoryAdminMixin, ReadOnlyAdminMixin
from market.models import Account, Order, OrderLine, Product, Transfer


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
class ProductAdmin(AuditHistoryAdminMixin, admin.ModelAdmin):
    form = ProductForm
    list_display = ["sku", "name", "price_cents", "stock", "updated"]
    search_fields = ["sku", "name"]
    list_filter = [InStockFilter]
    ordering = ["sku"]
    readonly_fields = ["created", "updated"]


class OrderLineInline(admin.TabularInline):
    model = OrderLine
    fields = ["product", "quantity", "unit_price_cents"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Order)
class OrderAdmin(AuditHistoryAdminMixin, admin.ModelAdmin):
    list_display = ["id", "buyer_id", "status", "total_cents", "created_at"]
    list_filter = ["status"]
    search_fields = ["=id", "=buyer_id"]
    readonly_fields = ["buyer_id", "total_cents", "created_at"]
    fields = ["buyer_id", "status", "total_cents", "created_at"]
    inlines = [OrderLineInline]
    date_hierarchy = "created_at"

    def has_add_permission(self, request):
        return False  # only order_create takes stock correctly

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Account)
class AccountAdmin(AuditHistoryAdminMixin, admin.ModelAdmin):
    list_display = ["id", "balance_cents", "owner_id", "created_at"]
    search_fields = ["=id", "=owner_id"]
    fields = ["balance_cents", "owner_id", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        own = ["created_at"] if obj is None else ["balance_cents", "created_at"]
        return [*own, *super().get_readonly_fields(request, obj)]

    def has_delete_permission(self, request, obj=None):
        # Deleting a funded account would destroy money; no bulk delete either.
        return obj is not None and obj.balance_cents == 0 and super().has_delete_permission(request, obj)


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    """Transfers only ever come from the service (locks, idempotency, invariants)."""

    list_display = ["id", "from_account", "to_account", "amount_cents", "requester_id", "created_at"]
    search_fields = ["=id", "=from_account__id", "=to_account__id", "idempotency_key"]
    list_select_related = ["from_account", "to_account"]
