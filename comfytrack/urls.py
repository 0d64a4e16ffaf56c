from django.contrib import admin
from django.urls import include, path

from accounts import views as accounts
from comfytrack.api import api
from insights import views as insights
from providers import views as providers
from runs import views as runs
from runs import views_bulk as runs_bulk

handler403 = "runs.views.forbidden"

admin.site.site_header = "comfytrack administration"
admin.site.site_title = "comfytrack administration"
admin.site.index_title = "Organizations, providers, runs and keys"
# The app list is one click away (Home); without the sidebar the change lists fit a 1280 px window.
admin.site.enable_nav_sidebar = False

urlpatterns = [
    path("admin/", admin.site.urls),
    # JSON API (the inbound ComfyDeploy webhook lives there too: /api/v1/hooks/comfydeploy/…)
    path("api/v1/", api.urls),
    # Dashboard
    path("", runs.home, name="home"),
    # Browsers and tools ask for /favicon.ico whatever a page links: the SVG icon answers it.
    path("favicon.ico", runs.favicon, name="favicon"),
    path("login/", accounts.login, name="login"),
    path("logout/", accounts.logout, name="logout"),
    path("org/", accounts.switch_org, name="switch-org"),
    path("runs/", runs.run_list, name="run-list"),
    path("runs/new/", runs.submit, name="run-submit"),
    path("runs/track/", runs_bulk.track_many, name="run-track"),
    path("runs/export/", runs_bulk.export_runs, name="run-export"),
    path("runs/cost/", runs_bulk.cost_total, name="run-cost"),
    path("runs/<uuid:code>/", runs.run_detail, name="run-detail"),
    path("runs/rows/", runs.run_rows, name="run-rows"),
    path("runs/<uuid:code>/live/", runs.run_live, name="run-live"),
    path("runs/<uuid:code>/cancel/", runs.run_cancel, name="run-cancel"),
    path("runs/<uuid:code>/retry/", runs.run_retry, name="run-retry"),
    path("runs/<uuid:code>/sync/", runs.run_sync, name="run-sync"),
    path("runs/<uuid:code>/archive/", runs.run_archive_retry, name="run-archive-retry"),
    path("gallery/", runs.gallery, name="gallery"),
    path("gallery/download/", runs_bulk.gallery_zip, name="gallery-zip"),
    path("outputs/<uuid:code>/", runs.output_lightbox, name="output"),
    path("outputs/<uuid:code>/file/", runs.output_file, name="output-file"),
    path("outputs/<uuid:code>/thumbnail/", runs.output_thumbnail, name="output-thumbnail"),
    path("stats/", runs.stats, name="stats"),
    path("compare/", insights.compare_page, name="compare"),
    path("compare/label/", insights.workflow_label, name="workflow-label"),
    path("providers/", providers.provider_list, name="provider-list"),
    path("providers/<uuid:code>/test/", providers.provider_test, name="provider-test"),
    path("settings/api-keys/", accounts.api_keys, name="api-keys"),
    path("settings/api-keys/new/", accounts.api_key_create, name="api-key-create"),
    path("settings/api-keys/<uuid:code>/revoke/", accounts.api_key_revoke, name="api-key-revoke"),
    path("settings/webhooks/", include("webhooks.urls")),
    path("settings/alerts/", include("alerts.urls")),
]
