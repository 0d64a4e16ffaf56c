from django.urls import path

from webhooks import views

app_name = "webhooks"

urlpatterns = [
    path("", views.endpoint_list, name="list"),
    path("<uuid:code>/", views.endpoint_detail, name="detail"),
    path("<uuid:code>/delete/", views.endpoint_delete, name="delete"),
    path("<uuid:code>/toggle/", views.endpoint_toggle, name="toggle"),
    path("<uuid:code>/test/", views.endpoint_test, name="test"),
    path("<uuid:code>/deliveries/<uuid:delivery>/redeliver/", views.redeliver, name="redeliver"),
]
