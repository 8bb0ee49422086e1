"""Audit capture: every create, update and delete of an `AuditedModel` writes one
outbox row in the same database and the same transaction as the change.

Callers do nothing: `save()` wraps the write and the outbox insert in one
savepoint-free atomic block on the database the save uses (joining an outer
transaction if there is one), and deletes are recorded by a `post_delete`
receiver, which Django's deletion collector runs inside its own atomic block, so
`obj.delete()`, `queryset.delete()` and cascades are covered. Nothing here
touches the shared database: a domain write succeeds while it is down, and the
relay (audit/relay.py) delivers the rows later.

Many-to-many changes (`post.tags.set(...)`) are folded into the event of their
object written earlier in the same transaction (the admin's save + save_m2m,
a service's save + set: one event), or make an `update` event of their own.

Not captured: `QuerySet.update()`, `bulk_create()` and `bulk_update()`, which
bypass `save()`; a bulk job records one event per run with `audit_bulk()`.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import json
import re
import uuid
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models, router, transaction
from django.utils import timezone

from audit.context import acting_as, current_actor

# Field names that never reach an audit event, whatever the model says.
SECRET_FIELD_RE = re.compile(r"password|passwd|secret|token|digest|api_?key|private_?key", re.IGNORECASE)

_paused: ContextVar[bool] = ContextVar("audit_capture_paused", default=False)


class AuditedModel(models.Model):
    """Base class of every domain model: its writes are audited without the caller's help."""

    # Field names never copied into an audit event (besides SECRET_FIELD_RE).
    audit_exclude: tuple[str, ...] = ()

    class Meta:
        abstract = True

    def audit_snapshot(self) -> None:
        """Declare the current values to be the stored row's (say, just locked with
        `select_for_update()` in this transaction): the next save diffs against
        them instead of reading the row again. Optional: without it the save
        reads (and locks) the old row itself."""
        self._audit_old = {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}

    def save(self, *args, **kwargs):
        snapshot = self.__dict__.pop("_audit_old", None)
        if args:  # Django < 6 still accepts the deprecated positional form
            kwargs.update(zip(("force_insert", "force_update", "using", "update_fields"), args))
        if _paused.get():
            return super().save(**kwargs)
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        kwargs["using"] = using
        update_fields = kwargs.get("update_fields")
        if update_fields is not None and not update_fields:
            return super().save(**kwargs)  # Django writes nothing
        with transaction.atomic(using=using, savepoint=False):
            written = _written_fields(self, update_fields)
            fields = [f for f in written if not _excluded(type(self), f)]
            old = None
            if snapshot is not None and not kwargs.get("force_insert"):
                old = {f.attname: snapshot[f.attname] for f in written}
            elif self.pk is not None and not kwargs.get("force_insert"):
                # Locked: the diff describes exactly the row this save replaces.
                old = (
                    type(self)
                    ._base_manager.using(using)
                    .select_for_update()
                    .filter(pk=self.pk)
                    .values(*[f.attname for f in written])
                    .first()
                )
            super().save(**kwargs)
            new = dict(_new_values(self, written, using))
            if old is None:
                changes = {f.attname: {"old": None, "new": json_safe(new[f])} for f in fields}
                _write(self, action="create", changes=changes, using=using)
                return
            changed = [f for f in written if old[f.attname] != new[f]]
            if changed:  # a save that changed nothing is no event
                changes = {
                    f.attname: {"old": json_safe(old[f.attname]), "new": json_safe(new[f])}
                    for f in changed
                    if f in fields
                }
                _write(self, action="update", changes=changes, using=using)


def _excluded(model: type[models.Model], field: models.Field) -> bool:
    exclude = getattr(model, "audit_exclude", ())
    return field.name in exclude or field.attname in exclude or bool(SECRET_FIELD_RE.search(field.name))


def _written_fields(instance: models.Model, update_fields) -> list[models.Field]:
    """Concrete fields (pk aside) this save writes: `update_fields` when given, else the loaded ones."""
    model = type(instance)
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    if update_fields is not None:
        names = set(update_fields)
        return [f for f in fields if f.name in names or f.attname in names]
    deferred = instance.get_deferred_fields()
    if deferred and not instance._state.adding:
        return [f for f in fields if f.attname not in deferred]
    return fields


def _new_values(instance: models.Model, fields: list[models.Field], using: str):
    """(field, value as stored); values that were SQL expressions are read back from the row."""
    pending = [f for f in fields if hasattr(getattr(instance, f.attname), "resolve_expression")]
    stored = {}
    if pending:
        stored = (
            type(instance)
            ._base_manager.using(using)
            .filter(pk=instance.pk)
            .values(*[f.attname for f in pending])
            .first()
            or {}
        )
    for f in fields:
        yield f, stored[f.attname] if f in pending else _python(f, getattr(instance, f.attname))


def _python(field: models.Field, value: Any) -> Any:
    """The value as the database would give it back (so "12" and 12 compare equal for an integer)."""
    if value is None or hasattr(value, "resolve_expression"):
        return value
    try:
        return field.to_python(value)
    except (ValidationError, TypeError, ValueError):
        return value


def json_safe(value: Any) -> Any:
    """A value JSON can hold: datetimes ISO-8601, Decimals and UUIDs as strings, bytes as hex."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()  # full precision (DjangoJSONEncoder would cut to milliseconds)
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, datetime.timedelta):
        return json.loads(json.dumps(value, cls=DjangoJSONEncoder))  # ISO-8601 duration
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    try:
        return json.loads(json.dumps(value, cls=DjangoJSONEncoder))
    except TypeError:
        return str(value)


def outbox_model_for(app_label: str) -> type[models.Model]:
    try:
        return apps.get_model(app_label, "AuditOutbox")
    except LookupError:
        raise ImproperlyConfigured(
            f"app {app_label!r} has audited models but no AuditOutbox(OutboxEntry) model in its models.py"
        ) from None


def _record(*, app_label: str, using: str, action: str, model_label: str, object_pk: str, changes: dict, actor=None):
    """Insert one outbox row on `using` (inside the caller's transaction) and relay it after commit."""
    who = current_actor() if actor is None else _resolve(actor)
    outbox = outbox_model_for(app_label)
    row = outbox(
        occurred_at=timezone.now(),
        actor=who.label,
        actor_id=who.id,
        action=action,
        model=model_label,
        object_pk=object_pk,
        changes=changes,
    )
    row.save(using=using, force_insert=True)
    _after_commit_relay(using)
    return row


def audit_relay_after_commit(using: str) -> None:
    """The relay kick for a service that writes outbox rows in its own SQL: after the
    current transaction on `using` commits, or at once outside a transaction (in
    autocommit the statement that wrote the rows has committed already)."""
    _after_commit_relay(using)


def _after_commit_relay(using: str) -> None:
    """Once per transaction: after it commits, this process's relay thread delivers the rows."""
    if not getattr(settings, "AUDIT_RELAY_ON_COMMIT", True):
        return
    from audit import relay

    conn = connections[using]
    registered = getattr(conn, "_audit_kick", None)
    # Still queued (not run, not dropped by a savepoint rollback): one kick per transaction is enough.
    if registered is not None and any(entry[1] is registered for entry in conn.run_on_commit):
        return
    base = relay.domain_alias(using)

    def kick():
        relay.kick(base)

    conn._audit_kick = kick
    transaction.on_commit(kick, using=using, robust=True)


def _resolve(actor):
    with acting_as(actor):
        return current_actor()


def _write(instance: models.Model, *, action: str, changes: dict, using: str) -> None:
    row = _record(
        app_label=instance._meta.app_label,
        using=using,
        action=action,
        model_label=instance._meta.label_lower,
        object_pk=str(instance.pk),
        changes=changes,
    )
    rows = _transaction_rows(using)
    if rows is not None:
        rows[(instance._meta.label_lower, str(instance.pk))] = row


def _transaction_rows(using: str) -> dict | None:
    """Outbox rows written by the current transaction on `using`, by object (None outside a transaction)."""
    conn = connections[using]
    if not conn.in_atomic_block or not conn.atomic_blocks:
        return None
    outermost = conn.atomic_blocks[0]
    state = getattr(conn, "_audit_transaction_rows", None)
    # Holding the Atomic object keeps its identity from being reused by a later transaction.
    if state is None or state[0] is not outermost:
        state = (outermost, {})
        conn._audit_transaction_rows = state
    return state[1]


def _m2m_name(model: type[models.Model], through: type[models.Model]) -> str | None:
    for f in model._meta.many_to_many:
        if f.remote_field.through is through:
            return f.name
    for rel in model._meta.related_objects:
        if rel.many_to_many and rel.through is through:
            return rel.get_accessor_name()
    return None


def record_m2m(sender, instance, action, using, pk_set=None, **kwargs) -> None:
    """m2m_changed receiver: the related ids before and after, merged into this transaction's event."""
    if _paused.get() or not isinstance(instance, AuditedModel) or instance.pk is None:
        return
    name = _m2m_name(type(instance), sender)
    if name is None or name in getattr(instance, "audit_exclude", ()):
        return
    pending = instance.__dict__.setdefault("_audit_m2m_before", {})
    if action in ("pre_add", "pre_remove", "pre_clear"):
        pending[name] = sorted(getattr(instance, name).all().using(using).values_list("pk", flat=True))
        return
    if action not in ("post_add", "post_remove", "post_clear") or name not in pending:
        return
    before = pending.pop(name)
    if action == "post_add":
        after = sorted(set(before) | set(pk_set or ()))
    elif action == "post_remove":
        after = sorted(set(before) - set(pk_set or ()))
    else:
        after = []
    if after == before:
        return
    key = (instance._meta.label_lower, str(instance.pk))
    rows = _transaction_rows(using)
    row = rows.get(key) if rows is not None else None
    if row is not None:
        changes = dict(row.changes)
        first = changes.get(name)
        changes[name] = {"old": first["old"] if first else before, "new": after}
        if changes[name]["old"] == after and row.action == "update":
            del changes[name]
        # The row is uncommitted (this transaction's): no relay can have taken it.
        if type(row).objects.using(using).filter(pk=row.pk).update(changes=changes):
            row.changes = changes
            return
    _write(instance, action="update", changes={name: {"old": before, "new": after}}, using=using)


def record_delete(sender, instance, using, origin=None, **kwargs) -> None:
    """post_delete receiver: Django's collector runs it inside the deletion's transaction."""
    if _paused.get():
        return
    fields = [f for f in sender._meta.concrete_fields if not f.primary_key and not _excluded(sender, f)]
    deferred = instance.get_deferred_fields()
    changes = {
        f.attname: {"old": json_safe(_python(f, getattr(instance, f.attname))), "new": None}
        for f in fields
        if f.attname not in deferred
    }
    _write(instance, action="delete", changes=changes, using=using)


def audit_bulk(*, model_label: str, using: str, counts: dict[str, int], actor=None) -> None:
    """One `bulk` event for a whole job run; call it inside the transaction of the job's last batch."""
    app_label = model_label.split(".", 1)[0]
    with transaction.atomic(using=using, savepoint=False):
        _record(
            app_label=app_label,
            using=using,
            action="bulk",
            model_label=model_label.lower(),
            object_pk="",
            changes={"counts": json_safe(dict(counts))},
            actor=actor,
        )


@contextlib.contextmanager
def capture_paused() -> Iterator[None]:
    """Per-row capture off inside the block: for bulk jobs that record one `audit_bulk` event instead."""
    token = _paused.set(True)
    try:
        yield
    finally:
        _paused.reset(token)


def audited_models() -> list[type[models.Model]]:
    return [m for m in apps.get_models() if issubclass(m, AuditedModel)]


def connect_signals() -> None:
    """Per-model receivers (not a global one) so unaudited models keep Django's fast delete."""
    from django.db.models.signals import m2m_changed, post_delete

    for model in audited_models():
        for field in model._meta.many_to_many:
            m2m_changed.connect(
                record_m2m,
                sender=field.remote_field.through,
                weak=False,
                dispatch_uid=f"audit-m2m-{field.remote_field.through._meta.label_lower}",
            )
        post_delete.connect(
            record_delete, sender=model, weak=False, dispatch_uid=f"audit-delete-{model._meta.label_lower}"
        )
