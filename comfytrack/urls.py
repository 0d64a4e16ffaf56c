from django.contrib import admin
from django.urls import include, path

from comfytrack.api import api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", api.urls),
    path("settings/webhooks/", include("webhooks.urls")),
]
