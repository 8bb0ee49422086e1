from django.urls import path

from config.users import views

urlpatterns = [
    path("<int:user_id>", views.user_detail),
]
