"""Organizations, memberships with roles, and organization API keys."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import uuid

from django.conf import settings
from django.db import connection, connections, models
from django.db.models import OuterRef, Subquery
from django.utils import timezone

from comfytrack.sql import column, column_of, python_value

API_KEY_PREFIX = "ct_"


class OrganizationQuerySet(models.QuerySet):
    def for_user(self, user, roles: tuple[str, ...] | None = None) -> OrganizationQuerySet:
        """Organizations `user` belongs to (optionally with one of `roles`); all of them for a superuser."""
        if not user.is_authenticated:
            return self.none()
        if user.is_superuser and roles is None:
            return self.all()
        memberships = Membership.objects.filter(user=user)
        if roles is not None:
            memberships = memberships.filter(role__in=roles)
        return self.filter(pk__in=memberships.values("organization_id"))

    def with_role_of(self, user) -> OrganizationQuerySet:
        """Each organization with `user_role`: the user's role in it (None where not a member), read in
        the same query instead of one `role_of` query per organization."""
        role = Membership.objects.filter(organization=OuterRef("pk"), user=user).values("role")[:1]
        return self.annotate(user_role=Subquery(role))


class Organization(models.Model):
    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created = models.DateTimeField(default=timezone.now, editable=False)
    # Runs finished longer ago than this lose their events, outputs and archived files to the scheduled
    # prune (comfytrack.retention); the runs themselves stay. Empty: kept forever.
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Delete the events, outputs and archived files of runs finished more than this many days "
        "ago (the runs themselves are kept). Empty keeps everything forever.",
    )

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def role_of(self, user) -> str | None:
        if not user.is_authenticated:
            return None
        membership = self.memberships.filter(user=user).only("role").first()
        return membership.role if membership else None


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Admin"
        MEMBER = "member", "Member"
        VIEWER = "viewer", "Viewer (read-only)"

    MANAGERS = (Role.OWNER, Role.ADMIN)
    WRITERS = (Role.OWNER, Role.ADMIN, Role.MEMBER)

    organization = models.ForeignKey(Organization, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="accounts_membership_unique_user"),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in self.MANAGERS

    @property
    def can_write(self) -> bool:
        return self.role in self.WRITERS


def hash_api_key(plain: str) -> str:
    # Unkeyed SHA-256: the token has 256 bits of entropy, so no pepper is needed and rotating
    # SECRET_KEY never invalidates API keys.
    return hashlib.sha256(plain.encode()).hexdigest()


# What an API request reads of its key (the rest loads on access, as deferred fields do).
_KEY_FIELDS = ("id", "code", "organization", "key_hash", "read_only", "last_used")


@functools.cache
def _key_fields() -> tuple[models.Field, ...]:
    """`_KEY_FIELDS` in the model's field order: the order `Model.from_db` takes a row's values in."""
    return tuple(field for field in ApiKey._meta.concrete_fields if field.name in _KEY_FIELDS)


@functools.cache
def _active_by_prefix_sql() -> str:
    names = ", ".join(column_of(field) for field in _key_fields())
    table = connection.ops.quote_name(ApiKey._meta.db_table)
    where = f"{column(ApiKey, 'prefix')} = %s AND {column(ApiKey, 'revoked')} IS NULL"
    return f"SELECT {names} FROM {table} WHERE {where}"  # noqa: S608 - model metadata only


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked=None)

    def authenticate(self, plain: str) -> ApiKey | None:
        """The active key matching `plain`, or None. Looked up by prefix, compared in constant time."""
        if not plain or not plain.startswith(API_KEY_PREFIX) or len(plain) > 100:
            return None
        digest = hash_api_key(plain)
        # On every API request, so kept lean: SQL written once (compiling the same `filter().only()`
        # query cost as much CPU as running it), no join to the organization (callers scope by
        # `organization_id`), no ORDER BY (a prefix matches one key). Its row becomes the key through
        # `Model.from_db`, Django's documented hook for loading a row: `Manager.raw()` mapped the columns
        # to fields anew on every call, twice the CPU of the query itself.
        fields = _key_fields()
        with connections[self.db].cursor() as cursor:
            cursor.execute(_active_by_prefix_sql(), [plain[:11]])
            rows = cursor.fetchall()
        for row in rows:
            values = [python_value(field, value) for field, value in zip(fields, row, strict=True)]
            key = self.model.from_db(self.db, [field.attname for field in fields], values)
            if hmac.compare_digest(key.key_hash, digest):
                return key
        return None


class ApiKey(models.Model):
    code = models.UUIDField(default=uuid.uuid4, editable=False, unique=True)
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    # "ct_" + the first 8 characters of the token: enough to find the row, useless to an attacker.
    prefix = models.CharField(max_length=11, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    read_only = models.BooleanField(default=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    revoked = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        verbose_name = "API key"

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @classmethod
    def issue(
        cls, organization: Organization, name: str, *, read_only: bool = False, created_by=None
    ) -> tuple[ApiKey, str]:
        """Create a key; the plain text is returned once and never stored."""
        plain = API_KEY_PREFIX + secrets.token_urlsafe(32)
        key = cls.objects.create(
            organization=organization,
            name=name,
            prefix=plain[:11],
            key_hash=hash_api_key(plain),
            read_only=read_only,
            created_by=created_by,
        )
        return key, plain

    @property
    def is_active(self) -> bool:
        return self.revoked is None

    def revoke(self) -> None:
        if self.revoked is None:
            self.revoked = timezone.now()
            self.save(update_fields=["revoked"])

    def touch(self) -> None:
        """Record use, at most once a minute per key (avoids a write on every request)."""
        now = timezone.now()
        if self.last_used is None or (now - self.last_used).total_seconds() > 60:
            ApiKey.objects.filter(pk=self.pk).update(last_used=now)
            self.last_used = now
