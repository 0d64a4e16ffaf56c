"""Organization scoping for the admin: a staff user who is owner/admin of an organization sees and
edits only that organization's objects; a superuser sees everything."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet

from accounts.models import Membership, Organization


def managed_organizations(request) -> QuerySet[Organization]:
    cached = getattr(request, "_managed_organizations", None)
    if cached is None:
        cached = Organization.objects.for_user(
            request.user, roles=None if request.user.is_superuser else Membership.MANAGERS
        )
        request._managed_organizations = cached
    return cached


class OrgScopedAdmin(admin.ModelAdmin):
    """`org_path` is the lookup from the model to its Organization ("" for Organization itself)."""

    org_path = "organization"
    # FK fields whose choices must be limited to the user's organizations: field -> lookup to Organization.
    scoped_foreign_keys: dict[str, str] = {}

    def _org_filter(self, request) -> dict:
        orgs = managed_organizations(request)
        return {f"{self.org_path}__in" if self.org_path else "pk__in": orgs}

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if request.user.is_superuser:
            return queryset
        return queryset.filter(**self._org_filter(request))

    def _allowed(self, request, obj=None) -> bool:
        user = request.user
        if not (user.is_active and user.is_staff):
            return False
        if user.is_superuser:
            return True
        if not managed_organizations(request).exists():
            return False
        return obj is None or self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_module_permission(self, request):
        return self._allowed(request)

    def has_view_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def has_add_permission(self, request):
        return self._allowed(request)

    def has_delete_permission(self, request, obj=None):
        return self._allowed(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        lookup = self.scoped_foreign_keys.get(db_field.name)
        if lookup is not None and not request.user.is_superuser:
            model = db_field.remote_field.model
            orgs = managed_organizations(request)
            kwargs["queryset"] = model._default_manager.filter(**{f"{lookup}__in" if lookup else "pk__in": orgs})
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
