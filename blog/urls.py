from django.urls import path

from blog import api
from config.httpkit.routing import methods

urlpatterns = [
    path("posts", methods(get=api.post_list, post=api.post_create)),
    # `str`, not `slug`: any unknown slug answers post_not_found, not the generic 404.
    path("posts/<str:slug>", methods(get=api.post_detail, patch=api.post_update)),
]
