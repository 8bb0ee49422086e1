"""The blog in the Django admin: saves go through blog.services, authors come from the shared database.

A post's author is an id, not a foreign key (the users live in another database), so the
form offers a chooser filled from the shared database and the changelist looks up the
usernames of a whole page in one query (config.adminkit.people).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from audit.admin import AuditHistoryAdminMixin
from blog import selectors, services
from blog.models import Post, Tag
from config.adminkit.people import PeopleAdminMixin, person_column
from config.adminkit.scale import ScaleAdminMixin


class PostAdminForm(forms.ModelForm):
    author_id = forms.TypedChoiceField(label="Author", coerce=int, choices=())

    class Meta:
        model = Post
        fields = ["title", "body", "status", "author_id", "tags"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        choices = selectors.author_choices()
        current = self.instance.author_id
        if current is not None and current not in {pk for pk, _ in choices}:
            # The author was deleted from the shared database; keep the post editable.
            choices.append((current, f"(deleted user #{current})"))
        self.fields["author_id"].choices = [("", "---------"), *choices]


@admin.register(Post)
class PostAdmin(ScaleAdminMixin, PeopleAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    form = PostAdminForm
    people = ("author_id",)
    author = person_column("author_id", "author")
    list_display = ("title", "status", "author", "published_at", "created_at", "audit_history")
    # Fixed choices, each served by an index in id order; date ranges instead of a
    # date_hierarchy (its links are a DISTINCT over the whole table).
    list_filter = ("status", ("created_at", admin.DateFieldListFilter), "tags")
    search_fields = ("title",)  # a trigram GIN index (migration 0002); and the author's username
    id_search_fields = ("id",)
    ordering = ("-id",)
    sortable_by = ("author",)
    fields = ("title", "slug", "body", "status", "author_id", "tags", "published_at", "created_at", "updated_at")
    readonly_fields = ("slug", "published_at", "created_at", "updated_at")
    filter_horizontal = ("tags",)
    actions = ["publish_selected", "unpublish_selected"]

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("author_id", request.user.pk)
        return initial

    def save_model(self, request, obj, form, change):
        services.post_save(post=obj)

    def delete_model(self, request, obj):
        services.post_delete(post=obj)

    def delete_queryset(self, request, queryset):
        # One by one, so each deletion is an ordinary (audited) delete of one post.
        for post in queryset:
            services.post_delete(post=post)

    @admin.action(description="Publish selected posts", permissions=["change"])
    def publish_selected(self, request, queryset):
        for post in queryset:
            services.post_publish(post=post)
        self.message_user(request, f"{len(queryset)} post(s) published.", messages.SUCCESS)

    @admin.action(description="Unpublish selected posts", permissions=["change"])
    def unpublish_selected(self, request, queryset):
        for post in queryset:
            services.post_unpublish(post=post)
        self.message_user(request, f"{len(queryset)} post(s) moved back to draft.", messages.SUCCESS)


@admin.register(Tag)
class TagAdmin(AuditHistoryAdminMixin, admin.ModelAdmin):
    list_display = ("name", "slug")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def delete_model(self, request, obj):
        services.tag_delete(tag=obj)

    def delete_queryset(self, request, queryset):
        for tag in queryset:
            services.tag_delete(tag=tag)
