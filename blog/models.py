"""The blog's tables, all in the `blog` database.

Authors are users of the shared database, so a post keeps only `author_id`:
no foreign key can cross databases. Slugs and publication dates are set by
blog/services.py, the one writer.
"""

from django.db import models
from django.db.models import F, Q

from audit.capture import AuditedModel
from audit.outbox import OutboxEntry

TITLE_MAX_LENGTH = 200
SLUG_MAX_LENGTH = 255  # the title's slug (<= 200) plus a "-<n>" suffix
TAG_NAME_MAX_LENGTH = 50


class AuditOutbox(OutboxEntry):
    """Audit events of this database waiting for delivery to the shared database."""


class Tag(AuditedModel):
    name = models.CharField(max_length=TAG_NAME_MAX_LENGTH)
    slug = models.SlugField(max_length=TAG_NAME_MAX_LENGTH + 10, db_index=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["slug"], name="blog_tag_slug_unique"),
            models.UniqueConstraint(fields=["name"], name="blog_tag_name_unique"),
        ]

    def __str__(self) -> str:
        return self.name


class Post(AuditedModel):
    class Status(models.TextChoices):
        DRAFT = "draft"
        PUBLISHED = "published"

    title = models.CharField(max_length=TITLE_MAX_LENGTH)
    slug = models.SlugField(max_length=SLUG_MAX_LENGTH, db_index=False, editable=False)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    # A user of the shared database (auth_user.id); see the module docstring.
    author_id = models.BigIntegerField()
    published_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    tags = models.ManyToManyField(Tag, blank=True, related_name="posts")

    class Meta:
        ordering = ["-published_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["slug"], name="blog_post_slug_unique"),
            models.CheckConstraint(condition=Q(status__in=["draft", "published"]), name="blog_post_status_valid"),
            models.CheckConstraint(
                condition=~Q(status="published") | Q(published_at__isnull=False), name="blog_post_published_has_date"
            ),
        ]
        indexes = [
            # The public list: published posts, newest first, keyset-paginated on (published_at, id).
            models.Index(
                F("published_at").desc(),
                F("id").desc(),
                condition=Q(status="published"),
                name="blog_post_published_idx",
            ),
            # Slug collision lookups (`^slug-[0-9]+$`) are prefix searches.
            models.Index(fields=["slug"], opclasses=["varchar_pattern_ops"], name="blog_post_slug_prefix_idx"),
            models.Index(fields=["author_id"], name="blog_post_author_idx"),
            # And, in migration 0002 only (Django cannot declare an operator class on an
            # expression), a trigram GIN index on UPPER(title): the admin's search.
            # The admin's status filter and date ranges, newest first.
            models.Index(fields=["status", "-id"], name="blog_post_status_idx"),
            models.Index(fields=["created_at"], name="blog_post_created_idx"),
        ]

    def __str__(self) -> str:
        return self.title
