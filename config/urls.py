from django.contrib import admin
from django.urls import include, path

from config import pages, views

handler400 = "config.http.bad_request"
handler404 = "config.http.not_found"
handler500 = "config.http.server_error"

urlpatterns = [
    path("", pages.home),
    path("healthz", views.healthz),
    path("readyz", views.readyz),
    path("metrics", views.metrics),
    path("api/users/<int:user_id>", views.user_detail),
    path("api/blog/", include("blog.urls")),
    path("api/market/", include("market.urls")),
    path("admin/", admin.site.urls),
]
