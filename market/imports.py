"""Bulk product import: a CSV file upserted into `Product` by sku, fast and restartable.

Pass 1 reads the file once, streaming: it validates every row (a bad one stops
the run naming its line and column, before anything is written), refuses a sku
that appears twice, and spools the normalised rows to a temporary file. Pass 2
sends the spool in batches, each batch its own transaction: new products go
straight into the table with COPY (PostgreSQL's fastest path); a batch that
meets existing skus goes through a temporary table, an UPDATE of the rows that
differ and an INSERT of the new ones. A run killed half-way leaves whole
batches; running it again finishes the job, since the upsert is idempotent.

One run at a time (a session-level advisory lock on the market database). The
per-row audit capture of `AuditedModel.save` is bypassed: a run records one
`bulk` audit event with its counts, written with its first batch and brought up
to date in the transaction of every later one, so even a run killed with SIGKILL
leaves an event that counts exactly what it committed (`_RunEvent`).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import itertools
import json
import os
import signal
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psycopg
from django.conf import settings
from django.db import IntegrityError, ProgrammingError, connections, router, transaction
from django.utils import timezone

from audit.capture import audit_relay_after_commit, outbox_model_for
from audit.context import current_actor
from config.multidb.public import alias, clean_error, connect_kwargs, lowered_backend_priority
from market.models import MAX_PRICE_CENTS, MAX_STOCK, SKU_RE, Product

COLUMNS = ("sku", "name", "price_cents", "stock")
DEFAULT_BATCH_SIZE = 50_000
MAX_BATCH_SIZE = 500_000
SPOOL_CHUNK_ROWS = 5_000
# One 64-bit advisory lock key per job, derived from its name (pg_locks shows it as classid/objid).
LOCK_KEY = int.from_bytes(hashlib.blake2b(b"market.import_products", digest_size=8).digest(), "big", signed=True)
UNIQUE_VIOLATION = "23505"
INSUFFICIENT_PRIVILEGE = "42501"
SKU_MESSAGE = "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
SKU_MAX = 64

# (phase, done, total): phase "validate" counts bytes of the file, "import" counts rows.
Progress = Callable[[str, int, int], None]


class ImportRejected(Exception):
    """The file is not importable; nothing was written."""

    def __init__(self, line: int, column: str | None, message: str):
        self.line, self.column, self.message = line, column, message
        where = f"line {line}, column {column}" if column else f"line {line}"
        super().__init__(f"{where}: {message}")


class ImportRefused(Exception):
    """The import cannot start (already running, or no way to hold its lock)."""


class ImportInterrupted(Exception):
    """Stopped by a signal; the batches committed so far stay (see `result`)."""

    def __init__(self, result: ImportResult, reason: str):
        self.result, self.reason = result, reason
        super().__init__(reason)


@dataclass
class ImportResult:
    rows: int = 0  # data rows in the file
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    batches: int = 0  # batches committed
    validate_s: float = 0.0
    import_s: float = 0.0
    batch_rows: list[int] = field(default_factory=list, repr=False)

    def counts(self, *, completed: bool = True) -> dict[str, int]:
        out = {k: v for k, v in asdict(self).items() if k in ("rows", "created", "updated", "unchanged", "batches")}
        out["completed"] = completed
        return out


def product_import(
    *,
    path: str | os.PathLike,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    backend_nice: int = 0,
    log: Callable[[str], None] | None = None,
) -> ImportResult:
    """Upsert every row of the CSV file at `path` into `Product`, keyed on sku.

    `backend_nice`: lower the CPU priority of the run's own database backend by
    that much while it runs, when the server is on this host and the OS allows
    it (config/multidb/backend/priority.py); `log` hears what was done about it.
    Raises `ImportRejected` for a bad file (nothing written), `ImportRefused`
    when another run holds the lock, `ImportInterrupted` on SIGINT/SIGTERM.
    """
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch_size must be between 1 and {MAX_BATCH_SIZE}")
    path = Path(path)
    if not path.is_file():
        raise ImportRefused(f"{path}: no such file")
    report = progress or (lambda phase, done, total: None)
    db = router.db_for_write(Product)
    result = ImportResult()
    try:
        with (
            _RunLock(db) as lock,
            lowered_backend_priority(db, backend_nice, log or (lambda message: None)),
            tempfile.TemporaryFile(prefix="import_products-") as spool,
        ):
            started = time.monotonic()
            batches = _validate(db, path, spool, batch_size, result, report)
            result.validate_s = time.monotonic() - started
            started = time.monotonic()
            with _RunEvent(db, lock) as event:
                try:
                    _write(db, spool, batches, result, report, event)
                finally:
                    result.import_s = time.monotonic() - started
    except KeyboardInterrupt as exc:  # JobCommand turns SIGINT/SIGTERM into this
        # The event of the batches committed so far is in the outbox already.
        raise ImportInterrupted(result, str(exc) or "interrupted") from None
    return result


# The lock ---------------------------------------------------------------------


class _RunLock:
    """`pg_try_advisory_lock` for the whole run, on a session that lives as long as the run.

    A transaction pooler hands each transaction a different server session, so
    there the lock is taken on a direct connection (`<P>_DATABASE_DIRECT_URL`),
    still labelled with the jobs application_name.
    """

    def __init__(self, db: str):
        self.db = db
        self.direct: psycopg.Connection | None = None

    def __enter__(self):
        info = alias(self.db)
        wrapper = connections[self.db]
        if info.pooler == "transaction":
            if not wrapper.settings_dict.get("DIRECT"):
                raise ImportRefused(
                    f"{info.var('POOLER')}=transaction: import_products needs a session-level advisory lock, "
                    f"which a transaction pooler cannot hold; set {info.var('DIRECT_URL')} to the database "
                    f"server itself"
                )
            try:
                self.direct = psycopg.connect(**connect_kwargs(self.db, direct=True), autocommit=True)
            except psycopg.Error as exc:
                password = wrapper.settings_dict["DIRECT"].get("PASSWORD")
                raise ImportRefused(
                    f"cannot open the direct connection for the lock: {clean_error(exc, password)}"
                ) from None
            got = self.direct.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)).fetchone()[0]
        else:
            with wrapper.cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
                got = cur.fetchone()[0]
        if not got:
            self._close_direct()
            raise ImportRefused(
                "import_products is already running (another run holds its lock); wait for it to finish"
            )
        return self

    def __exit__(self, *exc_info):
        if self.direct is not None:
            self._close_direct()  # closing the session releases its lock
            return
        wrapper = connections[self.db]
        # The connection goes back to a pool afterwards: a lock left on it would outlive the run.
        try:
            if wrapper.connection is not None and not wrapper.connection.closed:
                with wrapper.cursor() as cur:
                    cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        except Exception:
            # A broken session: dropping it (not handing it back to the pool) releases the lock too.
            if wrapper.connection is not None:
                wrapper.connection.close()
            wrapper.close()

    def _close_direct(self):
        if self.direct is not None:
            self.direct.close()
            self.direct = None


# Pass 1: validate and spool -----------------------------------------------------


def _open(path: Path):
    # Undecodable bytes become lone surrogates, reported with their line (a strict
    # decoder would fail on a whole read-ahead block, far from the culprit).
    return open(path, encoding="utf-8-sig", errors="surrogateescape", newline="")


def _records(reader) -> Iterator[tuple[int, list[str]]]:
    """(line where the record starts, fields) of a csv.reader; blank lines are skipped."""
    last = 0
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise ImportRejected(last + 1, None, f"not valid CSV ({exc})") from None
        line, last = last + 1, reader.line_num
        if row:
            yield line, row


def _header(reader) -> list[int]:
    """Position of each of COLUMNS in the file; any order, nothing else."""
    expected = ",".join(COLUMNS)
    first = next(_records(reader), None)
    if first is None:
        raise ImportRejected(1, None, f"the file is empty; its first line must be the header {expected}")
    line, names = first
    names = [n.strip() for n in names]
    for i, name in enumerate(names):
        if name not in COLUMNS:
            raise ImportRejected(line, name or f"#{i + 1}", f"unknown column in the header (expected {expected})")
        if names.index(name) != i:
            raise ImportRejected(line, name, "appears twice in the header")
    for name in COLUMNS:
        if name not in names:
            raise ImportRejected(line, name, f"missing from the header (expected {expected})")
    return [names.index(c) for c in COLUMNS]


def _line_numbers(path: Path, ordinals: set[int]) -> dict[int, int]:
    """{n: line} for the n-th data record (1-based): a second read, only to word an error."""
    out: dict[int, int] = {}
    with _open(path) as text:
        for n, (line, _row) in enumerate(_records(csv.reader(text, strict=True))):
            if n in ordinals:
                out[n] = line
                if len(out) == len(ordinals):
                    break
    return out


def _int(value: str, line: int, column: str, maximum: int) -> int:
    """A non-negative integer (surrounding spaces allowed), or a precise error."""
    text = value.strip()
    if not text or not (text.isascii() and text.isdigit()):
        if _has_bad_bytes(value):
            raise ImportRejected(line, column, "is not valid UTF-8")
        raise ImportRejected(line, column, "must be a non-negative integer")
    if len(text) > 20 or int(text) > maximum:
        raise ImportRejected(line, column, f"must be at most {maximum}")
    return int(text)


def _has_bad_bytes(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _row_values(row: list[str], positions: list[int], line: int, name_max: int) -> tuple[str, str, int, int]:
    """One record's values, normalised, or `ImportRejected` naming its line and column."""
    if len(row) != len(COLUMNS):
        if len(row) < len(COLUMNS):
            missing = [c for c, i in zip(COLUMNS, positions) if i >= len(row)]
            raise ImportRejected(line, missing[0], "missing (the row has fewer fields than the header)")
        raise ImportRejected(line, f"#{len(row)}", f"unexpected field (the header has {len(COLUMNS)} columns)")
    i_sku, i_name, i_price, i_stock = positions
    sku = row[i_sku]
    if not SKU_RE.fullmatch(sku):
        raise ImportRejected(line, "sku", _sku_fault(sku))
    name = row[i_name].strip()
    if "\x00" in name:
        raise ImportRejected(line, "name", "must not contain a NUL character")
    if not name or len(name) > name_max:
        raise ImportRejected(line, "name", f"must be non-empty text of at most {name_max} characters")
    return (
        sku,
        name,
        _int(row[i_price], line, "price_cents", MAX_PRICE_CENTS),
        _int(row[i_stock], line, "stock", MAX_STOCK),
    )


def _sku_fault(sku: str) -> str:
    """Why a sku that failed SKU_RE is wrong, in the words a person fixing the file needs."""
    if not sku:
        return "must not be empty"
    if _has_bad_bytes(sku):
        return "is not valid UTF-8"
    if "\x00" in sku:
        return "must not contain a NUL character"
    if sku != sku.strip():
        # Also a trailing line break inside quotes ("ABC\n"): it would break the spooled CSV.
        return "must not start or end with whitespace or a line break"
    if len(sku) > SKU_MAX:
        return f"must be at most {SKU_MAX} characters"
    return SKU_MESSAGE


def _csv_line(sku: str, name: str, price: int, stock: int) -> str:
    # The name is always quoted, so commas, quotes and line breaks in it need nothing more.
    return f'{sku},"{name.replace(chr(34), chr(34) * 2)}",{price},{stock}'


class _Undecodable(Exception):
    def __init__(self, ordinal: int):
        self.ordinal = ordinal


def _validate(
    db: str, path: Path, spool, batch_size: int, result: ImportResult, report: Progress
) -> list[tuple[int, int]]:
    """Validate the whole file into `spool`; returns the batches as (spool end offset, rows).

    The spool holds one canonical CSV line per row, in the table's column
    order. Most lines of a product file have no quote: those are split and
    checked inline and, when already canonical, spooled as they are; a line
    with a quote goes through the csv module (its record may span lines).
    """
    total_bytes = path.stat().st_size
    report("validate", 0, total_bytes)
    name_max = Product._meta.get_field("name").max_length
    sku_ok = SKU_RE.fullmatch  # fullmatch: "$" in a pattern would let "ABC\n" through
    batches: list[tuple[int, int]] = []
    wrapper = connections[db]
    rejected: ImportRejected | None = None
    undecodable: int | None = None
    bad_ordinal = 2**62
    duplicate = False
    # The skus also stream into a temporary table keyed on sku, in one COPY for
    # the whole pass: the server catches a repeated sku while this process
    # parses, and this process's memory stays flat. One transaction, so it works
    # through a transaction pooler too.
    try:
        with transaction.atomic(using=db), wrapper.cursor() as cur, _open(path) as text:
            _set_timeouts(cur)
            _create_temp(
                db, cur, 'CREATE TEMP TABLE import_products_seen (sku text COLLATE "C" PRIMARY KEY) ON COMMIT DROP'
            )
            with wrapper.wrap_database_errors, cur.cursor.copy("COPY import_products_seen (sku) FROM STDIN") as seen:
                reader = csv.reader(text, strict=True)
                positions = _header(reader)
                i_sku, i_name, i_price, i_stock = positions
                canonical = positions == [0, 1, 2, 3]
                # Rows go to the spool a few thousand at a time, whatever the batch size:
                # memory depends on neither the file nor the batch.
                chunk: list[str] = []
                skus: list[str] = []  # the chunk's skus, for the duplicate check
                chunk_size = flush_at = min(batch_size, SPOOL_CHUNK_ROWS)
                batch_start = 0  # rows before the batch being spooled
                line = reader.line_num  # physical lines read so far
                try:
                    for raw in text:
                        line += 1
                        if '"' in raw:
                            start = line
                            record = csv.reader(itertools.chain((raw,), text), strict=True)
                            try:
                                row = next(record)
                            except csv.Error as exc:
                                raise ImportRejected(start, None, f"not valid CSV ({exc})") from None
                            line += record.line_num - 1
                            values = _row_values(row, positions, start, name_max)
                            chunk.append(_csv_line(*values))
                            skus.append(values[0])
                        else:
                            body = raw.rstrip("\r\n")
                            if not body:
                                continue  # a blank line
                            row = body.split(",")
                            if len(row) != 4:
                                _row_values(row, positions, line, name_max)  # raises, naming the column
                            sku, name, price, stock = row[i_sku], row[i_name], row[i_price], row[i_stock]
                            if (
                                sku_ok(sku)
                                and name
                                and len(name) <= name_max
                                and len(name.strip()) == len(name)
                                and "\x00" not in name
                                and price.isdigit()
                                and price.isascii()
                                and len(price) < 13
                                and stock.isdigit()
                                and stock.isascii()
                                and len(stock) < 10
                            ):
                                # Plainly valid (12 and 9 digits stay below both maxima): no int() needed.
                                chunk.append(body if canonical else f"{sku},{name},{price},{stock}")
                            else:
                                chunk.append(_csv_line(*_row_values(row, positions, line, name_max)))
                            skus.append(sku)
                        if len(chunk) == flush_at:
                            end = _spool_chunk(spool, seen, chunk, skus, result.rows)
                            result.rows += len(chunk)
                            chunk, skus = [], []
                            if result.rows - batch_start == batch_size:
                                batches.append((end, batch_size))
                                batch_start = result.rows
                                report("validate", text.buffer.tell(), total_bytes)
                            flush_at = min(chunk_size, batch_start + batch_size - result.rows)
                    if chunk:
                        _spool_chunk(spool, seen, chunk, skus, result.rows)
                        result.rows += len(chunk)
                    if result.rows > batch_start:
                        batches.append((spool.tell(), result.rows - batch_start))
                except ImportRejected as exc:
                    rejected, bad_ordinal = exc, result.rows + len(chunk) + 1
                    try:  # the rows before the bad one may hold an earlier fault
                        _spool_chunk(spool, seen, chunk, skus, result.rows)
                    except _Undecodable as undecodable_exc:
                        undecodable = undecodable_exc.ordinal
                except _Undecodable as exc:
                    undecodable = exc.ordinal
    except IntegrityError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != UNIQUE_VIOLATION:
            raise
        duplicate = True
    if duplicate or rejected or undecodable:
        _raise_first_fault(db, path, spool, rejected, undecodable, before=bad_ordinal, duplicate=duplicate)
    report("validate", total_bytes, total_bytes)
    return batches


def _create_temp(db: str, cur, statement: str) -> None:
    try:
        cur.execute(statement)
    except ProgrammingError as exc:
        if getattr(exc.__cause__, "sqlstate", None) != INSUFFICIENT_PRIVILEGE:
            raise
        name = connections[db].settings_dict["NAME"]
        raise ImportRefused(
            f"import_products stages rows in temporary tables, which this role may not create in database "
            f"{name!r}: run it with the jobs role (provision_roles grants that role TEMP there, the web role none)"
        ) from None


def _spool_chunk(spool, seen, chunk: list[str], skus: list[str], rows_before: int) -> int:
    try:
        data = ("\n".join(chunk) + "\n").encode("utf-8") if chunk else b""
    except UnicodeEncodeError:
        # Only names can hold undecodable bytes (the other columns are ASCII by now).
        bad = next(i for i, text in enumerate(chunk) if _has_bad_bytes(text))
        if bad:  # the rows before it still count for the duplicate check
            spool.write(("\n".join(chunk[:bad]) + "\n").encode("utf-8"))
            seen.write(("\n".join(skus[:bad]) + "\n").encode())
        raise _Undecodable(rows_before + bad + 1) from None
    spool.write(data)
    if skus:
        # Skus match SKU_RE: nothing to escape in COPY's text format.
        seen.write(("\n".join(skus) + "\n").encode())
    return spool.tell()


def _raise_first_fault(
    db: str,
    path: Path,
    spool,
    rejected: ImportRejected | None,
    undecodable: int | None,
    *,
    before: int,
    duplicate: bool,
) -> None:
    """Raise the first fault of the file in file order: a repeated sku, an undecodable name, a bad row."""
    limit = min(undecodable or before, before)
    if duplicate:
        found = _first_duplicate(db, spool, limit)
        if found:
            n, sku, first = found
            lines = _line_numbers(path, {n, first})
            raise ImportRejected(
                lines[n], "sku", f"{sku!r} already appears on line {lines[first]}; each sku may appear once"
            )
    if undecodable is not None and undecodable < before:
        raise ImportRejected(_line_numbers(path, {undecodable})[undecodable], "name", "is not valid UTF-8")
    if rejected is not None:
        raise rejected
    raise RuntimeError("import_products saw a repeated sku but could not find it again")


def _first_duplicate(db: str, spool, limit: int) -> tuple[int, str, int] | None:
    """(n, sku, first n) of the first row before row `limit` whose sku an earlier row has; only for a bad file."""
    wrapper = connections[db]
    with transaction.atomic(using=db), wrapper.cursor() as cur:
        _set_timeouts(cur)
        cur.execute(
            "CREATE TEMP TABLE import_products_rows (n bigint GENERATED ALWAYS AS IDENTITY, "
            'sku text COLLATE "C", name text, price_cents text, stock text) ON COMMIT DROP'
        )
        spool.seek(0)
        with (
            wrapper.wrap_database_errors,
            cur.cursor.copy(
                "COPY import_products_rows (sku, name, price_cents, stock) FROM STDIN (FORMAT csv)"
            ) as copy,
        ):
            while block := spool.read(1 << 20):
                copy.write(block)
        cur.execute(
            "SELECT n, sku, first FROM (SELECT n, sku, min(n) OVER (PARTITION BY sku) AS first"
            "  FROM import_products_rows) s WHERE n > first AND n < %s ORDER BY n LIMIT 1",
            (limit,),
        )
        return cur.fetchone()


def _set_timeouts(cur, *, synchronous_commit: bool = True) -> None:
    # Session options do not pass a transaction pooler; SET LOCAL does, and ends with the transaction.
    cur.execute(
        "SELECT set_config('statement_timeout', %s, true), set_config('synchronous_commit', %s, true)",
        (str(settings.ENV["JOBS_DATABASE_STATEMENT_TIMEOUT_MS"]), "on" if synchronous_commit else "off"),
    )


# Pass 2: write --------------------------------------------------------------------


def _sql(db: str) -> dict[str, str]:
    qn = connections[db].ops.quote_name
    meta = Product._meta
    table, pk = qn(meta.db_table), qn(meta.pk.column)
    sku, name, price, stock = (qn(meta.get_field(c).column) for c in COLUMNS)
    updated = qn(meta.get_field("updated").column)
    cols = f"{sku}, {name}, {price}, {stock}"
    differs = f"(p.{name}, p.{price}, p.{stock}) IS DISTINCT FROM (b.name, b.price_cents, b.stock)"
    return {
        # created/updated come from their database defaults (now()).
        "copy": f"COPY {table} ({cols}) FROM STDIN (FORMAT csv)",
        "stage": "CREATE TEMP TABLE import_products_batch (sku text NOT NULL, name text NOT NULL, "
        "price_cents bigint NOT NULL, stock integer NOT NULL) ON COMMIT DROP",
        "copy_stage": "COPY import_products_batch (sku, name, price_cents, stock) FROM STDIN (FORMAT csv)",
        # A batch is a few thousand key lookups in a table that may hold millions:
        # index probes, never a hash or merge join that reads the whole table per batch.
        "plan": "SELECT set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true)",
        "classify": f"""
            SELECT count(p.{pk}), count(p.{pk}) FILTER (WHERE {differs})
            FROM import_products_batch b LEFT JOIN {table} p ON p.{sku} = b.sku""",
        # Rows that differ are locked in sku order, the order orders lock products in,
        # so an import and an order can never wait on each other in a cycle.
        "update": f"""
            WITH changed AS (
                SELECT p.{pk} FROM {table} p JOIN import_products_batch b ON b.sku = p.{sku}
                WHERE {differs} ORDER BY p.{sku} FOR UPDATE OF p
            )
            UPDATE {table} p SET {name} = b.name, {price} = b.price_cents, {stock} = b.stock, {updated} = now()
            FROM import_products_batch b
            WHERE p.{pk} IN (SELECT {pk} FROM changed) AND b.sku = p.{sku} AND {differs}""",
        # ON CONFLICT only for a product created by someone else since the UPDATE
        # (xmax = 0 tells an inserted row from one updated by the conflict clause).
        "insert": f"""
            WITH written AS (
                INSERT INTO {table} AS p ({cols})
                SELECT b.sku, b.name, b.price_cents, b.stock FROM import_products_batch b
                WHERE NOT EXISTS (SELECT FROM {table} x WHERE x.{sku} = b.sku)
                ORDER BY b.sku
                ON CONFLICT ({sku}) DO UPDATE SET {name} = EXCLUDED.{name}, {price} = EXCLUDED.{price},
                    {stock} = EXCLUDED.{stock}, {updated} = now()
                WHERE (p.{name}, p.{price}, p.{stock})
                    IS DISTINCT FROM (EXCLUDED.{name}, EXCLUDED.{price}, EXCLUDED.{stock})
                RETURNING (p.xmax = 0) AS inserted
            )
            SELECT count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM written""",
    }


def _write(
    db: str, spool, batches: list[tuple[int, int]], result: ImportResult, report: Progress, event: _RunEvent
) -> None:
    wrapper = connections[db]
    sql = _sql(db)
    fast = True  # new skus: try COPY straight into the table first
    start = 0
    report("import", 0, result.rows)
    for index, (end, rows) in enumerate(batches):
        spool.seek(start)
        data = spool.read(end - start)
        start = end
        held = _SignalsHeld()
        with held:
            last = index == len(batches) - 1
            with transaction.atomic(using=db), wrapper.cursor() as cur:
                # Only the last commit waits for the disk: it flushes every earlier batch's WAL
                # with it, so a run that reports success is durable; a batch lost to a server
                # crash before that is written again by the rerun (its event update with it).
                _set_timeouts(cur, synchronous_commit=last)
                created, updated = _write_batch(wrapper, cur, sql, data, rows, fast)
                unchanged = rows - created - updated
                fast = created == rows  # no existing sku in this batch: the next one is likely new too
                # The run's counts so far, committed with the batch they count.
                event.write(
                    {
                        **result.counts(completed=last),
                        "created": result.created + created,
                        "updated": result.updated + updated,
                        "unchanged": result.unchanged + unchanged,
                        "batches": result.batches + 1,
                    }
                )
                held.hold()  # from the commit to the counts: a signal waits, so the counts stay exact
            result.created += created
            result.updated += updated
            result.unchanged += unchanged
            result.batches += 1
            result.batch_rows.append(rows)
        event.hold()
        report("import", sum(result.batch_rows), result.rows)
    if not batches:  # a header-only file is still a run
        with transaction.atomic(using=db):
            event.write(result.counts())


class _RunEvent:
    """The run's one `bulk` audit event: an outbox row that every batch's transaction
    writes, held back from the relay while the run lives.

    The relay takes outbox rows with `FOR UPDATE SKIP LOCKED`. A session of the run
    holds the row `FOR KEY SHARE` from the first commit to the end of the run: that
    lock makes the relay skip the row, yet lets each batch's UPDATE (a non-key update)
    through. When the run ends, however it ends (SIGKILL included: the server drops a
    dead client's session and its lock with it), the row is delivered with the counts
    of every batch committed. Should a relay take the row anyway (the holding session
    lost), the next batch starts a new event carrying the same `run` id and the counts
    so far: the last one of a run counts.
    """

    def __init__(self, db: str, lock: _RunLock):
        self.db, self.lock = db, lock
        self.outbox = outbox_model_for(Product._meta.app_label)
        self.run = str(uuid.uuid4())
        self.event_id: uuid.UUID | None = None  # the outbox row this run writes into
        self.held: uuid.UUID | None = None  # the row the holding session has locked
        self.session: psycopg.Connection | None = None
        self.own_session = False

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.release()
        if self.event_id is not None:
            audit_relay_after_commit(self.db)  # delivered now, not at the next sweep

    def write(self, counts: dict) -> None:
        """In the caller's transaction: the event says `counts`."""
        changes = {"counts": counts, "run": self.run}
        now = timezone.now()
        if self.event_id is not None:
            # Plain SQL: a batch of a few thousand rows should not pay for the ORM here.
            with connections[self.db].cursor() as cur:
                cur.execute(
                    f'UPDATE "{self.outbox._meta.db_table}" SET changes = %s::jsonb, occurred_at = %s '
                    "WHERE event_id = %s",
                    [json.dumps(changes), now, self.event_id],
                )
                if cur.rowcount:
                    return
        who = current_actor()
        self.event_id = (
            self.outbox.objects.using(self.db)
            .create(
                occurred_at=now,
                actor=who.label,
                actor_id=who.id,
                action="bulk",
                model=Product._meta.label_lower,
                object_pk="",
                changes=changes,
            )
            .event_id
        )

    def hold(self) -> None:
        """After a commit: make sure the holding session has the event's row (best effort)."""
        if self.event_id is None or self.held == self.event_id:
            return
        for _attempt in range(2):  # a session lost meanwhile is replaced once
            try:
                session = self._session()
                if self.held is not None:
                    session.execute("ROLLBACK")
                    self.held = None
                session.execute("BEGIN")
                table = self.outbox._meta.db_table
                found = session.execute(
                    f'SELECT 1 FROM "{table}" WHERE event_id = %s FOR KEY SHARE SKIP LOCKED', [self.event_id]
                ).fetchone()
                if found:
                    self.held = self.event_id
                else:  # a relay has it already: nothing to hold
                    session.execute("ROLLBACK")
                return
            except psycopg.Error:
                # Without the hold the event is still written with every batch; only "one per run" may suffer.
                self._close()

    def release(self) -> None:
        self._close()

    def _session(self) -> psycopg.Connection:
        if self.session is None:
            # Behind a transaction pooler the run lock has a direct session already: share it.
            self.session, self.own_session = self.lock.direct, False
            if self.session is None:
                self.session = psycopg.connect(**connect_kwargs(self.db, direct=True), autocommit=True)
                self.own_session = True
            # The session idles in its transaction for the whole run, on purpose.
            self.session.execute("SET idle_in_transaction_session_timeout = 0")
        return self.session

    def _close(self) -> None:
        if self.session is not None:
            if self.own_session:
                self.session.close()
            else:  # the run lock's session: end the transaction, keep the session
                with contextlib.suppress(psycopg.Error):
                    self.session.execute("ROLLBACK")
        self.session, self.held = None, None


def _write_batch(wrapper, cur, sql: dict[str, str], data: bytes, rows: int, fast: bool) -> tuple[int, int]:
    """Write one batch inside the caller's transaction; returns (created, updated)."""
    if fast:
        try:
            with transaction.atomic(using=wrapper.alias), wrapper.wrap_database_errors:
                with cur.cursor.copy(sql["copy"]) as copy:
                    copy.write(data)
            return rows, 0
        except IntegrityError as exc:  # some sku exists: rolled back to the savepoint, take the slow path
            if getattr(exc.__cause__, "sqlstate", None) != UNIQUE_VIOLATION:
                raise
    cur.execute(sql["plan"])
    cur.execute(sql["stage"])
    with wrapper.wrap_database_errors, cur.cursor.copy(sql["copy_stage"]) as copy:
        copy.write(data)
    cur.execute(sql["classify"])
    existing, differing = cur.fetchone()
    created = updated = 0
    if differing:
        cur.execute(sql["update"])
        updated = cur.rowcount
    if existing < rows:
        cur.execute(sql["insert"])
        created, raced = cur.fetchone()
        updated += raced
    return created, updated


class _SignalsHeld:
    """From `hold()` to the end of the block SIGINT/SIGTERM wait (the OS keeps them pending)."""

    SIGNALS = {signal.SIGINT, signal.SIGTERM}

    def __init__(self):
        self.previous: set | None = None

    def hold(self) -> None:
        self.previous = signal.pthread_sigmask(signal.SIG_BLOCK, self.SIGNALS)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, self.previous)  # a pending signal is delivered now
