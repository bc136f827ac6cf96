"""The lookback window: an incremental read starts a little before where the last one stopped.

A row's cursor can be older than the moment the row became visible: a database row's
`updated_at` is often its transaction's start (`now()`), and Salesforce sets `SystemModstamp`
before a long transaction commits. A read that resumed strictly after the last (cursor, key) it
saw would never see such a row. A row whose cursor is more than the window older than the
moment a read began was visible to that read, so the next read starts at `since`, the earlier
of the last cursor and (the last read's start − the window), and reads the rows in between
again: for history loaded long ago nothing is re-read, only rows that changed in the window
before the last read began.

Re-read rows are not written twice: each read remembers, in its checkpoint, the rows it read
whose cursor is at or after its `since` (a 64-bit digest of key and cursor each, at most
MAX_RECENT_ROWS, the newest kept), and the next read skips a row it has been told about with
the same key and cursor. A row that changed again has a new cursor and is written. Past the
bound, the oldest rows are forgotten and, re-read, written again with the same dedupe key.
Cursors that are not times (integers, text) have no window.
"""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from hashlib import blake2b
from typing import Any

MAX_RECENT_ROWS = 1_000
_DIGEST_CHARS = 16  # hex of 8 bytes


def instant(value: Any) -> float | None:
    """A cursor value as a POSIX time (naive times are UTC); None for a cursor that is not a time."""
    if isinstance(value, datetime):
        return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    return None


def rewound(value: Any, to: float) -> Any:
    """`value` moved back to the instant `to`, in its own type (a date to `to`'s day)."""
    moment = datetime.fromtimestamp(to, UTC)
    if isinstance(value, datetime):
        return moment if value.tzinfo is not None else moment.replace(tzinfo=None)
    return moment.date()


def digest(key: Iterable[Any], cursor: Any, encode: Callable[[Any], Any]) -> str:
    """Key and cursor as 16 hex characters; `encode` is the connector's state encoder, so the same
    row read by another path (REST or Bulk, decoded or encoded) has the same digest."""
    text = json.dumps([*(encode(v) for v in key), encode(cursor)], separators=(",", ":"), sort_keys=True)
    return blake2b(text.encode(), digest_size=_DIGEST_CHARS // 2).hexdigest()


class Recent:
    """What a position knows about the rows near its lookback window.

    - since: where this read's remembered rows start (its start time − the window, as a POSIX
      time); None until the read's first page.
    - seen: rows this read delivered (or skipped) with a cursor at or after `since`, digest →
      cursor instant. Given as a function, it is worked out only when asked for (a checkpoint),
      not for every page.
    - skip: rows the previous read remembered that this one has not passed yet.
    """

    def __init__(
        self,
        since: float | None = None,
        seen: Mapping[str, float] | Callable[[], Mapping[str, float]] | None = None,
        skip: Mapping[str, float] | None = None,
    ) -> None:
        self.since = since
        self._seen = seen if seen is not None else {}
        self.skip: Mapping[str, float] = skip if skip is not None else {}

    @property
    def seen(self) -> Mapping[str, float]:
        if callable(self._seen):
            self._seen = self._seen()
        return self._seen

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Recent):
            return NotImplemented
        return (self.since, dict(self.seen), dict(self.skip)) == (other.since, dict(other.seen), dict(other.skip))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Recent(since={self.since!r}, seen={len(self.seen)} rows, skip={len(self.skip)} rows)"

    def to_json(self) -> dict[str, Any]:
        return {"since": self.since, "seen": _grouped(self.seen), "skip": _grouped(self.skip)}

    @classmethod
    def from_json(cls, value: Any) -> Recent | None:
        if not isinstance(value, dict):
            return None
        since = value.get("since")
        return cls(
            since=float(since) if isinstance(since, int | float) else None,
            seen=_ungrouped(value.get("seen")),
            skip=_ungrouped(value.get("skip")),
        )

    def next_read(self) -> Recent:
        """What the next read starts with: this read's rows are the ones to skip."""
        return Recent(skip=self.seen)


def _grouped(rows: Mapping[str, float]) -> dict[str, str]:
    """Digests grouped by instant, concatenated: 16 characters a row in the stored state."""
    groups: dict[str, list[str]] = {}
    for row, at in rows.items():
        groups.setdefault(repr(at), []).append(row)
    return {at: "".join(sorted(rows)) for at, rows in groups.items()}


def _ungrouped(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        return {}
    rows: dict[str, float] = {}
    for at, digests in value.items():
        if not isinstance(digests, str) or len(digests) % _DIGEST_CHARS:
            continue
        moment = float(at)
        for start in range(0, len(digests), _DIGEST_CHARS):
            rows[digests[start : start + _DIGEST_CHARS]] = moment
    return rows


def start_of_next_read(cursor: Any, recent: Recent | None, window: int) -> tuple[Any, bool]:
    """(cursor to start from, whether to start at it inclusively instead of after the last key):
    the earlier of `cursor` and the last read's `since`."""
    at = instant(cursor)
    if not window or at is None or recent is None or recent.since is None or at < recent.since:
        return cursor, False
    return rewound(cursor, recent.since), True


def _newest(rows: Mapping[str, float]) -> dict[str, float]:
    """At most MAX_RECENT_ROWS rows, the newest."""
    if len(rows) <= MAX_RECENT_ROWS:
        return dict(rows)
    return dict(sorted(rows.items(), key=lambda item: item[1], reverse=True)[:MAX_RECENT_ROWS])


class LookbackFilter:
    """Drops re-read rows and keeps the state of one read, page by page.

    `ordered`: pages come in ascending cursor order (databases). Then only the rows up to the
    last one to skip are looked at one by one; after them, the window's start is found in each
    page by bisection and the rows from there are kept aside as they are, digested only when a
    checkpoint asks (`Recent.seen`), which keeps the cost off the encoded fast path even when
    every row is recent.
    """

    def __init__(
        self,
        window: int,
        recent: Recent | None,
        key_and_cursor: Callable[[dict[str, Any]], tuple[tuple[Any, ...], Any]],
        encode: Callable[[Any], Any],
        *,
        ordered: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        recent = recent or Recent()
        self._since = recent.since if recent.since is not None else clock() - window
        self._seen = dict(recent.seen)  # replaced, never changed in place: snapshots share it
        self._skip = dict(recent.skip)
        self._tails: list[list[dict[str, Any]]] = []  # ordered: the newest rows in the window, undigested
        self._key_and_cursor, self._encode, self._ordered = key_and_cursor, encode, ordered

    def recent(self) -> Recent:
        since, seen, tails = self._since, self._seen, tuple(self._tails)
        if not tails:
            return Recent(since=since, seen=seen, skip=dict(self._skip))

        def digested() -> dict[str, float]:
            merged = dict(seen)
            for tail in tails:
                for row in tail:
                    key, cursor = self._key_and_cursor(row)
                    merged[digest(key, cursor, self._encode)] = instant(cursor) or 0.0
            return _newest(merged)

        return Recent(since=since, seen=digested, skip=dict(self._skip))

    def rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The rows not read before; remembers those in the window."""
        if not rows:
            return rows
        if self._ordered:
            return self._ordered_rows(rows)
        seen = dict(self._seen)
        kept = [row for row in rows if self._take(row, seen)]
        self._seen = _newest(seen)
        return kept

    def _take(self, row: dict[str, Any], seen: dict[str, float]) -> bool:
        """Whether to deliver `row` (not read before); remembers it when its cursor is in the window."""
        key, cursor = self._key_and_cursor(row)
        at = instant(cursor)
        if at is None:
            return True
        name = digest(key, cursor, self._encode) if self._skip or at >= self._since else ""
        fresh = self._skip.pop(name, None) is None
        if at >= self._since:
            seen[name] = at
        return fresh

    def _ordered_rows(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept: list[dict[str, Any]] = []
        index = 0
        if self._skip:
            last_to_skip = max(self._skip.values())
            seen = dict(self._seen)
            while index < len(rows):
                at = instant(self._key_and_cursor(rows[index])[1])
                if at is not None and at > last_to_skip:
                    self._skip = {}  # in cursor order: nothing later was read before
                    break
                if self._take(rows[index], seen):
                    kept.append(rows[index])
                index += 1
            self._seen = _newest(seen)
        rest = rows[index:]
        kept.extend(rest)
        start = bisect_left(rest, self._since, key=self._instant_or_earliest)
        if start < len(rest):
            window = rest[start:][-MAX_RECENT_ROWS:]
            if start > 0 or len(window) == MAX_RECENT_ROWS:
                # Everything remembered so far is older than these rows: they replace it.
                self._seen, self._tails = {}, [window]
            else:
                self._tails.append(window)
                while sum(len(tail) for tail in self._tails[1:]) >= MAX_RECENT_ROWS:
                    self._tails.pop(0)
        return kept

    def _instant_or_earliest(self, row: dict[str, Any]) -> float:
        at = instant(self._key_and_cursor(row)[1])
        return float("-inf") if at is None else at
