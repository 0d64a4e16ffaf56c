from django.urls import path

from alerts import views

app_name = "alerts"

urlpatterns = [
    path("", views.alert_list, name="list"),
    path("channels/new/", views.channel_create, name="channel-create"),
    path("channels/<uuid:code>/edit/", views.channel_edit, name="channel-edit"),
    path("channels/<uuid:code>/delete/", views.channel_delete, name="channel-delete"),
    path("rules/new/", views.rule_create, name="rule-create"),
    path("rules/<uuid:code>/", views.rule_detail, name="rule"),
    path("rules/<uuid:code>/edit/", views.rule_edit, name="rule-edit"),
    path("rules/<uuid:code>/test/", views.rule_test, name="rule-test"),
    path("rules/<uuid:code>/mute/", views.rule_mute, name="rule-mute"),
    path("rules/<uuid:code>/delete/", views.rule_delete, name="rule-delete"),
]
