from django.contrib import admin
from django.urls import path

from runs.views_hooks import comfydeploy_hook

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/hooks/comfydeploy/<uuid:provider_id>/<str:token>", comfydeploy_hook, name="hook-comfydeploy"),
]
