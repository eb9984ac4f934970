"""The activity log llama-swap's UI shows: one row per request to a model, kept in SQLite, in
memory (the newest `metricsMaxInMemory`) or in the `store.path` file across restarts (internal/
store/store.go and its migration 00001_create_activity.sql, llama-swap).

Recording never waits: a row gets its id at once (the event and the capture name it), and is
written with the others pending by one thread of its own, in batches; reads go through that thread
too, so they see every row recorded before them. What waits to be written is bounded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import math
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from halogen.runtime.base.inflight import rfc3339

# Rows waiting for the writer; past this the oldest waiting are dropped (and counted).
MAX_PENDING = 10_000
FLUSH_EVERY = 0.1  # seconds

_SCHEMA = """
CREATE TABLE IF NOT EXISTS activity (
    id INTEGER PRIMARY KEY,
    ts_created REAL NOT NULL,
    model_id TEXT NOT NULL,
    req_path TEXT NOT NULL DEFAULT '',
    resp_content_type TEXT NOT NULL DEFAULT '',
    resp_status_code INTEGER NOT NULL DEFAULT 0,
    cache_tokens INTEGER NOT NULL DEFAULT 0,
    draft_tokens INTEGER NOT NULL DEFAULT 0,
    draft_acc_tokens INTEGER NOT NULL DEFAULT 0,
    input_tokens INTEGER NOT NULL DEFAULT 0,
    output_tokens INTEGER NOT NULL DEFAULT 0,
    prompt_per_second REAL NOT NULL DEFAULT 0,
    tokens_per_second REAL NOT NULL DEFAULT 0,
    duration_ms INTEGER NOT NULL DEFAULT 0,
    error_msg TEXT NOT NULL DEFAULT '',
    metadata_json TEXT NOT NULL DEFAULT ''
);
"""
# The file's indexes (llama-swap's migration). The in-memory log has at most metricsMaxInMemory
# rows, where a scan is cheap and each index would cost every insert and prune.
_INDEXES = """
CREATE INDEX IF NOT EXISTS idx_activity_created_id ON activity (ts_created DESC, id DESC);
CREATE INDEX IF NOT EXISTS idx_activity_model_created_id ON activity (model_id, ts_created DESC, id DESC);
"""
_COLUMNS = (
    "id, ts_created, model_id, req_path, resp_content_type, resp_status_code, cache_tokens, "
    "draft_tokens, draft_acc_tokens, input_tokens, output_tokens, prompt_per_second, "
    "tokens_per_second, duration_ms, error_msg, metadata_json"
)

# The sortable API keys and their columns (activitySortColumns, internal/store/store.go): only
# these reach the SQL.
SORT_COLUMNS = {
    "id": "id",
    "time": "ts_created",
    "model": "model_id",
    "req_path": "req_path",
    "resp_status_code": "resp_status_code",
    "resp_content_type": "resp_content_type",
    "cached": "cache_tokens",
    "prompt": "input_tokens",
    "generated": "output_tokens",
    "drafted": "draft_tokens",
    "prompt_speed": "prompt_per_second",
    "gen_speed": "tokens_per_second",
    "duration": "duration_ms",
}


@dataclass(frozen=True)
class Tokens:
    """TokenMetrics (internal/store/store.go); -1 where the upstream did not say."""

    cache_tokens: int = -1
    draft_tokens: int = -1
    draft_acc_tokens: int = -1
    input_tokens: int = 0
    output_tokens: int = 0
    prompt_per_second: float = -1.0
    tokens_per_second: float = -1.0


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def tokens_of(
    counts: tuple[int, int] | None, timings: Mapping[str, Any] | None, cached: int | None
) -> Tokens:
    """buildMetrics (internal/server/metrics.go, llama-swap): the usage counts, which llama-server's
    `timings` override and complete with the speeds, the cached and the drafted tokens."""
    prompt, generated = counts if counts is not None else (0, 0)
    cache = cached if cached is not None else -1
    prompt_speed = gen_speed = -1.0
    draft = draft_acc = -1
    if timings is not None:
        prompt = _int(timings.get("prompt_n")) or 0
        generated = _int(timings.get("predicted_n")) or 0
        prompt_speed = _float(timings.get("prompt_per_second")) or 0.0
        gen_speed = _float(timings.get("predicted_per_second")) or 0.0
        if "cache_n" in timings:
            cache = _int(timings.get("cache_n")) or 0
        if "draft_n" in timings and "draft_n_accepted" in timings:
            draft = _int(timings.get("draft_n")) or 0
            draft_acc = _int(timings.get("draft_n_accepted")) or 0
    return Tokens(cache, draft, draft_acc, prompt, generated, prompt_speed, gen_speed)


def timings_ms(timings: Mapping[str, Any] | None) -> int:
    """prompt_ms + predicted_ms, which llama-swap takes as the duration when it is longer."""
    if timings is None:
        return 0
    return int((_float(timings.get("prompt_ms")) or 0.0) + (_float(timings.get("predicted_ms")) or 0.0))


@dataclass
class Entry:
    """ActivityLogEntry (internal/store/store.go)."""

    id: int
    timestamp: float
    model: str
    req_path: str
    resp_content_type: str
    resp_status_code: int
    tokens: Tokens
    duration_ms: int
    error_msg: str = ""
    metadata: dict[str, str] = field(default_factory=dict)

    def row(self) -> tuple[Any, ...]:
        t = self.tokens
        meta = json.dumps(self.metadata) if self.metadata else ""
        return (
            self.id,
            self.timestamp,
            self.model,
            self.req_path,
            self.resp_content_type,
            self.resp_status_code,
            t.cache_tokens,
            t.draft_tokens,
            t.draft_acc_tokens,
            t.input_tokens,
            t.output_tokens,
            t.prompt_per_second,
            t.tokens_per_second,
            self.duration_ms,
            self.error_msg,
            meta,
        )

    @classmethod
    def of_row(cls, row: Sequence[Any]) -> Entry:
        return cls(
            id=row[0],
            timestamp=row[1],
            model=row[2],
            req_path=row[3],
            resp_content_type=row[4],
            resp_status_code=row[5],
            tokens=Tokens(*row[6:13]),
            duration_ms=row[13],
            error_msg=row[14],
            metadata=json.loads(row[15]) if row[15] else {},
        )

    def json(self, has_capture: bool) -> dict[str, Any]:
        t = self.tokens
        out: dict[str, Any] = {
            "id": self.id,
            "timestamp": rfc3339(self.timestamp),
            "model": self.model,
            "req_path": self.req_path,
            "resp_content_type": self.resp_content_type,
            "resp_status_code": self.resp_status_code,
            "tokens": {
                "cache_tokens": t.cache_tokens,
                "draft_tokens": t.draft_tokens,
                "draft_acc_tokens": t.draft_acc_tokens,
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "prompt_per_second": t.prompt_per_second,
                "tokens_per_second": t.tokens_per_second,
            },
            "duration_ms": self.duration_ms,
            "has_capture": has_capture,
        }
        if self.error_msg:
            out["error_msg"] = self.error_msg
        if self.metadata:
            out["metadata"] = self.metadata
        return out


@dataclass(frozen=True)
class Query:
    """ActivityQuery (internal/store/store.go): the filter, then the page."""

    models: tuple[str, ...] = ()
    start: float | None = None
    end: float | None = None
    min_id: int = 0
    max_id: int = 0
    limit: int = 25
    page: int = 1
    sort: str = "id"
    order: str = "desc"


def _where(models: Sequence[str], query: Query | None = None) -> tuple[str, list[Any]]:
    conditions: list[str] = []
    args: list[Any] = []
    if models:
        conditions.append("model_id IN (" + ", ".join("?" * len(models)) + ")")
        args += list(models)
    if query is not None:
        if query.start is not None:
            conditions.append("ts_created >= ?")
            args.append(query.start)
        if query.end is not None:
            conditions.append("ts_created <= ?")
            args.append(query.end)
        if query.min_id:
            conditions.append("id >= ?")
            args.append(query.min_id)
        if query.max_id:
            conditions.append("id <= ?")
            args.append(query.max_id)
    return (" WHERE " + " AND ".join(conditions) if conditions else ""), args


def percentile(ordered: Sequence[float], p: float) -> float:
    if not ordered:
        return 0.0
    rank = p / 100 * (len(ordered) - 1)
    lower, upper = math.floor(rank), math.ceil(rank)
    return ordered[lower] + (rank - lower) * (ordered[upper] - ordered[lower])


def histogram(values: Sequence[float]) -> dict[str, Any] | None:
    """calculateHistogramData (internal/store/store.go): Sturges' bin count within 5..20."""
    if not values:
        return None
    ordered = sorted(values)
    low, high = ordered[0], ordered[-1]
    marks = {"p50": percentile(ordered, 50), "p95": percentile(ordered, 95), "p99": percentile(ordered, 99)}
    if low == high:
        return {"bins": [len(values)], "min": low, "max": high, "binSize": 0.0, **marks}
    count = min(20, max(5, math.ceil(math.log2(len(values))) + 1))
    size = (high - low) / count
    bins = [0] * count
    for value in values:
        bins[min(math.floor((value - low) / size), count - 1)] += 1
    return {"bins": bins, "min": low, "max": high, "binSize": size, **marks}


class Activity:
    """The rows, in SQLite (`path` "" = in memory, the newest `keep` rows)."""

    def __init__(self, path: str = "", keep: int = 1000) -> None:
        self.path = path
        self.keep = keep
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="activity")
        self._db: sqlite3.Connection | None = None
        self._pending: list[Entry] = []
        self._flushing = False
        self.dropped = 0  # rows dropped because the writer fell MAX_PENDING behind
        self._next = self._pool.submit(self._open).result()

    def _open(self) -> int:
        db = sqlite3.connect(self.path or ":memory:", check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA busy_timeout = 5000")
        if self.path:
            mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"{self.path}: WAL mode not available (got {mode})")
            db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA + (_INDEXES if self.path else ""))
        self._db = db
        (highest,) = db.execute("SELECT COALESCE(MAX(id), 0) FROM activity").fetchone()
        return int(highest) + 1

    def record(self, make: Callable[[int], Entry]) -> Entry:
        """The row `make` builds with the next id; written soon, by the writer thread."""
        entry = make(self._next)
        self._next += 1
        self._pending.append(entry)
        if len(self._pending) > MAX_PENDING:
            del self._pending[0]
            self.dropped += 1
        if not self._flushing:
            # Rows go to the writer in batches, at most FLUSH_EVERY apart: one wakeup of its
            # thread per batch, not per request (a read flushes first, so it sees them all).
            self._flushing = True
            asyncio.get_running_loop().call_later(FLUSH_EVERY, self._flush)
        return entry

    def _flush(self) -> None:
        # On the event loop, once per batch: hand what is pending to the writer thread.
        batch, self._pending = self._pending, []
        self._flushing = False
        if batch:
            self._pool.submit(self._write, batch)

    def _write(self, batch: list[Entry]) -> None:
        db = self._db
        assert db is not None
        with db:
            db.executemany(
                f"INSERT INTO activity ({_COLUMNS}) VALUES ({', '.join('?' * 16)})", [e.row() for e in batch]
            )
            if not self.path:
                # The newest `keep` (PruneActivity: only for the in-memory store).
                db.execute(
                    "DELETE FROM activity WHERE id <= (SELECT MAX(id) FROM activity) - ?", (self.keep,)
                )

    async def _run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        self._flush()  # a read sees every row recorded before it
        db = self._db
        assert db is not None
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, db)

    async def page(self, query: Query) -> tuple[list[Entry], int]:
        """The rows of the page asked and how many match in all."""

        def work(db: sqlite3.Connection) -> tuple[list[Entry], int]:
            where, args = _where(query.models, query)
            (total,) = db.execute("SELECT COUNT(*) FROM activity" + where, args).fetchone()
            column = SORT_COLUMNS.get(query.sort, "id")
            direction = "ASC" if query.order == "asc" else "DESC"
            order = (
                f" ORDER BY id {direction}"
                if column == "id"
                else f" ORDER BY {column} {direction}, id {direction}"
            )
            rows = db.execute(
                f"SELECT {_COLUMNS} FROM activity{where}{order} LIMIT ? OFFSET ?",
                [*args, query.limit, (query.page - 1) * query.limit],
            ).fetchall()
            return [Entry.of_row(r) for r in rows], int(total)

        result: tuple[list[Entry], int] = await self._run(work)
        return result

    async def stats(self, model: str = "") -> dict[str, Any]:
        """ActivityStats (internal/store/store.go)."""

        def work(db: sqlite3.Connection) -> dict[str, Any]:
            where, args = _where([model] if model else [])
            total, prompt, generated, cached = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
                "COALESCE(SUM(CASE WHEN cache_tokens > 0 THEN cache_tokens ELSE 0 END), 0) FROM activity"
                + where,
                args,
            ).fetchone()
            speeds = db.execute(
                "SELECT prompt_per_second, tokens_per_second FROM activity"
                + (where + " AND" if where else " WHERE")
                + " (prompt_per_second > 0 OR tokens_per_second > 0)",
                args,
            ).fetchall()
            return {
                "total_requests": total,
                "total_input_tokens": prompt,
                "total_output_tokens": generated,
                "total_cache_tokens": cached,
                "prompt_histogram": histogram([p for p, _ in speeds if p > 0]),
                "gen_histogram": histogram([g for _, g in speeds if g > 0]),
            }

        result: dict[str, Any] = await self._run(work)
        return result

    async def close(self) -> None:
        self._flush()
        loop = asyncio.get_running_loop()

        def shut() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None

        await loop.run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)
