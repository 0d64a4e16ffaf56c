"""What comfytrack knows about a workflow beyond its runs: the name people call it by."""

from __future__ import annotations

from django.db import models

from accounts.models import Organization


class Workflow(models.Model):
    """A workflow fingerprint (runs.fingerprint) of one organization, with its name.

    Rows are made when a workflow is first listed or labelled: the runs carry the fingerprint itself, so a
    workflow exists as soon as one of its runs does. `name` is derived (the most common SaveImage prefix
    of its recent runs); `label` is what a member set, and wins."""

    organization = models.ForeignKey(Organization, models.CASCADE, related_name="workflows", db_index=False)
    fingerprint = models.CharField(max_length=16)
    name = models.CharField(max_length=100, blank=True)
    label = models.CharField(max_length=100, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "fingerprint"], name="insights_workflow_unique_fingerprint")
        ]

    def __str__(self) -> str:
        return self.display_name

    @property
    def display_name(self) -> str:
        return self.label or self.name or f"workflow {self.fingerprint}"


class Price(models.Model):
    """What a provider charges, set by an organization's admin: per GPU-second (for one GPU type, or for
    any when `gpu` is empty) and/or per run. insights.costing turns it into each run's cost."""

    provider = models.ForeignKey("providers.Provider", models.CASCADE, related_name="prices")
    gpu = models.CharField(
        max_length=40, blank=True, help_text="The provider's GPU type (e.g. A10G, H100); empty: any GPU."
    )
    per_gpu_second = models.DecimalField(
        max_digits=14, decimal_places=8, null=True, blank=True, help_text="USD per GPU-second."
    )
    per_run = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True, help_text="USD per run.")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "gpu"], name="insights_price_unique_gpu"),
            models.CheckConstraint(
                condition=models.Q(per_gpu_second__isnull=False) | models.Q(per_run__isnull=False),
                name="insights_price_has_a_price",
            ),
            models.CheckConstraint(
                condition=models.Q(per_gpu_second__gte=0) | models.Q(per_gpu_second=None),
                name="insights_price_per_second_not_negative",
            ),
            models.CheckConstraint(
                condition=models.Q(per_run__gte=0) | models.Q(per_run=None), name="insights_price_per_run_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.gpu or 'any GPU'}"
