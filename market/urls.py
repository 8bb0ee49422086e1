from django.urls import path

from market import views

urlpatterns = [
    path("products", views.products),
    path("products/<str:sku>", views.product),
    path("orders", views.orders),
    path("orders/<int:order_id>", views.order),
    path("accounts", views.accounts),
    path("accounts/<int:account_id>", views.account),
    path("transfers", views.transfers),
]
