from django.contrib import admin
from django.urls import include, path

from config.httpkit import pages, views

handler400 = "config.httpkit.errors.bad_request"
handler404 = "config.httpkit.errors.not_found"
handler500 = "config.httpkit.errors.server_error"

urlpatterns = [
    path("", pages.home),
    path("healthz", views.healthz),
    path("readyz", views.readyz),
    path("metrics", views.metrics),
    path("api/users/", include("config.users.urls")),
    path("api/blog/", include("blog.urls")),
    path("api/market/", include("market.urls")),
    path("admin/", admin.site.urls),
]
