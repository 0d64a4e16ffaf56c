"""Organization scoping for the admin: a staff user who is owner/admin of an organization sees and
edits only that organization's objects; a superuser sees everything.

That includes every choice a form offers: each foreign key (select, raw id or autocomplete) lists and
accepts only objects of the user's organizations, and users only when they are members of one.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Model, QuerySet

from accounts.models import Membership, Organization


def managed_organizations(request) -> QuerySet[Organization]:
    cached = getattr(request, "_managed_organizations", None)
    if cached is None:
        cached = Organization.objects.for_user(
            request.user, roles=None if request.user.is_superuser else Membership.MANAGERS
        )
        request._managed_organizations = cached
    return cached


@cache
def org_lookup(model: type[Model], depth: int = 2) -> str | None:
    """The lookup from `model` to its Organization ("" for Organization itself), found by following
    foreign keys (a credential through its provider, an event through its run), or None if there is none."""
    if model is Organization:
        return ""
    if model is get_user_model():
        return "memberships__organization"
    keys = [f for f in model._meta.get_fields() if f.many_to_one and f.concrete and f.related_model is not model]
    for field in keys:
        if field.related_model is Organization:
            return field.name
    for field in keys if depth else ():
        if field.related_model is get_user_model():
            continue  # a user belongs to many organizations; an object's creator does not place it in one
        inner = org_lookup(field.related_model, depth - 1)
        if inner:
            return f"{field.name}__{inner}"
    return None


def scoped_choices(model: type[Model], request) -> QuerySet:
    """The objects of `model` a form may offer this user: those of their organizations, nothing if unrelated."""
    manager = model._default_manager
    if request.user.is_superuser:
        return manager.all()
    lookup = org_lookup(model)
    if lookup is None:
        return manager.none()
    queryset = manager.filter(**{f"{lookup}__in" if lookup else "pk__in": managed_organizations(request)})
    return queryset.distinct() if model is get_user_model() else queryset


if TYPE_CHECKING:
    _AdminBase = admin.options.BaseModelAdmin  # what the mixin's super() calls reach
else:
    _AdminBase = object


class ScopedChoicesMixin(_AdminBase):
    """Every foreign key and many-to-many field of the admin's forms offers and accepts scoped objects only.

    Use `autocomplete_fields`, never `raw_id_fields`: the raw-id widget renders the label of whatever id
    it is given (`?retry_of=<pk>`) without going through the form's queryset."""

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        kwargs["queryset"] = scoped_choices(db_field.remote_field.model, request)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        kwargs["queryset"] = scoped_choices(db_field.remote_field.model, request)
        return super().formfield_for_manytomany(db_field, request, **kwargs)


class OrgScopedAdmin(ScopedChoicesMixin, admin.ModelAdmin):
    """`org_path` is the lookup from the model to its Organization ("" for Organization itself)."""

    org_path = "organization"

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
