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
