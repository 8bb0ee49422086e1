from django.contrib import admin
from django.urls import path

from blog.api import router as blog_api
from config.httpkit import api, pages, views
from config.users.api import router as users_api
from market.api import router as market_api

handler400 = "config.httpkit.errors.bad_request"
handler404 = "config.httpkit.errors.not_found"
handler500 = "config.httpkit.errors.server_error"

urlpatterns = [
    path("", pages.home),
    path("healthz", views.healthz),
    path("readyz", views.readyz),
    path("metrics", views.metrics),
    # Every /api/ endpoint, typed (django-ninja), with /api/openapi.json and /api/docs.
    path("api/", api.build([("/users", users_api), ("/blog", blog_api), ("/market", market_api)]).urls),
    path("admin/", admin.site.urls),
]
