from __future__ import annotations

from django.contrib import admin, messages

from accounts.models import ApiKey, Membership, Organization
from accounts.scoping import OrgScopedAdmin, ScopedChoicesMixin


class MembershipInline(ScopedChoicesMixin, admin.TabularInline):
    # Org admins pick among people already in their organizations; new people come via add_member.
    model = Membership
    extra = 0
    fields = ["user", "role", "created"]
    readonly_fields = ["created"]


@admin.register(Organization)
class OrganizationAdmin(OrgScopedAdmin):
    org_path = ""
    list_display = ["name", "slug", "code", "created"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["code", "created"]
    inlines = [MembershipInline]

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(Membership)
class MembershipAdmin(OrgScopedAdmin):
    list_display = ["user", "organization", "role", "created"]
    list_filter = ["role"]
    search_fields = ["user__username", "organization__name"]


@admin.register(ApiKey)
class ApiKeyAdmin(OrgScopedAdmin):
    list_display = ["name", "organization", "prefix", "read_only", "created", "last_used", "revoked"]
    list_filter = ["read_only"]
    search_fields = ["name", "prefix"]
    fields = ["organization", "name", "read_only", "prefix", "created", "last_used", "revoked"]
    readonly_fields = ["prefix", "created", "last_used", "revoked"]
    actions = ["revoke_keys"]

    def get_readonly_fields(self, request, obj=None):
        # A key's organization never changes after it is issued.
        return [*self.readonly_fields, "organization"] if obj else self.readonly_fields

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, plain = ApiKey.issue(obj.organization, obj.name, read_only=obj.read_only, created_by=request.user)
        obj.pk, obj.prefix, obj.key_hash, obj.created = key.pk, key.prefix, key.key_hash, key.created
        obj._state.adding = False
        messages.warning(request, f"API key created. Copy it now, it will not be shown again: {plain}")

    @admin.action(description="Revoke selected API keys")
    def revoke_keys(self, request, queryset):
        for key in queryset:
            key.revoke()
        self.message_user(request, f"Revoked {queryset.count()} key(s).")
