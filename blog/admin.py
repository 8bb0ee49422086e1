"""The blog in the Django admin: saves go through blog.services, authors come from the shared database.

A post's author is an id, not a foreign key (the users live in another database), so the
form offers a chooser filled from the shared database and the changelist looks up the
usernames of a whole page in one query (config.adminkit.people).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages

from audit.admin import AuditHistoryAdminMixin
from blog import services
from blog.models import Post, Tag
from config.adminkit.people import PeopleAdminMixin, person_column, user_ids_exactly_named, usernames
from config.adminkit.scale import ScaleAdminMixin, many_to_many_filter


class PostAdminForm(forms.ModelForm):
    """The author is typed as a username (the users live in the shared database, and a list of
    every user would not fit a page at a million users); stored as `author_id`."""

    author = forms.CharField(label="Author", max_length=150, help_text="The author's username.")

    class Meta:
        model = Post
        fields = ["title", "body", "status", "tags"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.instance.author_id
        if current is not None:
            # A deleted author keeps the post editable: the field shows the id it still holds.
            self.initial.setdefault("author", usernames([current]).get(current) or f"#{current}")

    def clean_author(self):
        name = self.cleaned_data["author"].strip()
        if name.startswith("#") and name[1:].isdigit() and int(name[1:]) == self.instance.author_id:
            return self.instance.author_id  # unchanged, deleted author
        ids = user_ids_exactly_named(name)
        if not ids:
            raise forms.ValidationError(f"No user named {name!r}.")
        return ids[0]

    def clean(self):
        cleaned = super().clean()
        if "author" in cleaned:
            self.instance.author_id = cleaned["author"]
        return cleaned


@admin.register(Post)
class PostAdmin(ScaleAdminMixin, PeopleAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    form = PostAdminForm
    people = ("author_id",)
    author = person_column("author_id", "author")
    list_display = ("title", "status", "author", "published_at", "created_at", "audit_history")
    # Fixed choices, each served by an index in id order; date ranges instead of a
    # date_hierarchy (its links are a DISTINCT over the whole table); tags through the link
    # table's index (Django's own filter is an EXISTS over a join of every link).
    list_filter = ("status", ("created_at", admin.DateFieldListFilter), many_to_many_filter("tags"))
    search_fields = ("title",)  # a trigram GIN index (migration 0002); and the author's username
    id_search_fields = ("id",)
    ordering = ("-id",)
    sortable_by = ("author",)
    fields = ("title", "slug", "body", "status", "author", "tags", "published_at", "created_at", "updated_at")
    readonly_fields = ("slug", "published_at", "created_at", "updated_at")
    filter_horizontal = ("tags",)
    actions = ["publish_selected", "unpublish_selected"]

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        initial.setdefault("author", request.user.get_username())
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
class TagAdmin(ScaleAdminMixin, AuditHistoryAdminMixin, admin.ModelAdmin):
    # ScaleAdminMixin for its delete page: a tag's links to posts are counted, not listed.
    list_display = ("name", "slug")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}

    def delete_model(self, request, obj):
        services.tag_delete(tag=obj)

    def delete_queryset(self, request, queryset):
        for tag in queryset:
            services.tag_delete(tag=tag)
