from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from pydantic import ValidationError as PydanticValidationError

from accounts.scoping import OrgScopedAdmin, ScopedChoicesMixin
from providers.clients import CLIENTS, client_class
from providers.crypto import SecretUnreadable
from providers.health import check_connection
from providers.models import Credential, Provider


def secret_keys_by_kind() -> dict[str, list[str]]:
    return {kind: list(client_class(kind).Secret.model_fields) for kind in CLIENTS}


def all_secret_keys() -> list[str]:
    keys: list[str] = []
    for names in secret_keys_by_kind().values():
        keys += [name for name in names if name not in keys]
    return keys


def secret_form_fields() -> dict[str, forms.Field]:
    """One write-only field per secret key any kind uses (declared, so the admin knows them)."""
    by_kind = secret_keys_by_kind()
    fields: dict[str, forms.Field] = {}
    for key in all_secret_keys():
        kinds = ", ".join(kind for kind, names in by_kind.items() if key in names)
        fields[f"secret_{key}"] = forms.CharField(
            label=f"Secret: {key}",
            required=False,
            strip=True,
            widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
            help_text=f"Used by: {kinds}. Leave blank to keep the stored value.",
        )
    return fields


class CredentialFormBase(forms.ModelForm):
    """Secret values are write-only: never rendered back; blank keeps the stored value."""

    class Meta:
        model = Credential
        fields = ["provider", "name", "is_active"]

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        provider = cleaned.get("provider")
        if provider is None:
            return cleaned
        entered = {key: cleaned.get(f"secret_{key}") for key in all_secret_keys() if cleaned.get(f"secret_{key}")}
        allowed = provider.client_class.Secret.model_fields
        stray = sorted(set(entered) - set(allowed))
        if stray:
            raise forms.ValidationError(
                f"{provider.kind_label} does not use: {', '.join(stray)}. It takes: {', '.join(allowed) or 'nothing'}."
            )
        current = {}
        if self.instance.pk:
            try:
                current = self.instance.plain_secret()
            except SecretUnreadable:
                current = {}
        merged = {**current, **entered}
        try:
            self.instance.provider = provider
            self.instance.set_secret(merged)
        except PydanticValidationError as exc:
            missing = sorted({str(e["loc"][0]) for e in exc.errors() if e["loc"]})
            raise forms.ValidationError(f"{provider.kind_label} needs: {', '.join(missing)}.") from None
        return cleaned


CredentialForm = type("CredentialForm", (CredentialFormBase,), secret_form_fields())


@admin.action(description="Test connection")
def check_connection_action(modeladmin, request, queryset):
    for obj in queryset:
        credential = obj if isinstance(obj, Credential) else obj.credentials.filter(is_active=True).first()
        provider = obj.provider if isinstance(obj, Credential) else obj
        ok, message = check_connection(provider, credential)
        modeladmin.message_user(request, f"{obj}: {message}", messages.SUCCESS if ok else messages.ERROR)


class CredentialInline(ScopedChoicesMixin, admin.TabularInline):
    model = Credential
    extra = 0
    fields = ["name", "hint", "is_active", "last_ok", "failing_since", "last_error"]
    readonly_fields = ["name", "hint", "last_ok", "failing_since", "last_error"]
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False  # Added on the Credential page, where the secret fields are.


@admin.register(Provider)
class ProviderAdmin(OrgScopedAdmin):
    list_display = ["name", "kind", "organization", "base_url", "is_active", "created"]
    list_filter = ["kind", "is_active"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["code", "created"]
    inlines = [CredentialInline]
    actions = [check_connection_action]


@admin.register(Credential)
class CredentialAdmin(OrgScopedAdmin):
    form = CredentialForm
    org_path = "provider__organization"
    list_display = ["__str__", "hint", "is_active", "last_ok", "failing_since", "last_error_short"]
    list_filter = ["is_active", "provider__kind"]
    search_fields = ["name", "provider__name"]
    readonly_fields = ["code", "secret_hint", "created", "last_ok", "failing_since", "last_error", "blocked_until"]
    actions = [check_connection_action]

    def get_fieldsets(self, request, obj=None):
        secret_fields = [f"secret_{key}" for key in all_secret_keys()]
        return [
            (None, {"fields": ["provider", "name", "is_active", "secret_hint"]}),
            ("Secret (write-only)", {"fields": secret_fields}),
            ("Health", {"fields": ["last_ok", "failing_since", "blocked_until", "last_error", "created", "code"]}),
        ]

    @admin.display(description="hint")
    def secret_hint(self, obj: Credential | None) -> str:
        # A credential being added has no secret yet: nothing to hint at (not "invalid").
        return obj.hint if obj is not None and obj.pk else "—"

    @admin.display(description="last error")
    def last_error_short(self, obj: Credential) -> str:
        return (obj.last_error[:80] + "…") if len(obj.last_error) > 80 else obj.last_error
