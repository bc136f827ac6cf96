"""What change data capture asks of a database's log, whatever the database: the types a provider's
`changes.py` implements and the capture (cdc.capture) drives.

Positions are text that sorts in log order (each log's own fixed-width form), so a checkpoint is a
string comparison away from knowing whether a change already landed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from churnguard.connectors.base import Stream
from churnguard.pipeline.records import Operation


@dataclass(frozen=True)
class LoggedChange:
    """One row change from the log. `row` holds the row's columns plus the pipeline's
    CHANGE_CURSOR (its position) and CHANGE_TIME (its commit time); `problem` is why it cannot be
    written faithfully (it becomes a reject with that reason, never a record with a wrong value)."""

    stream: Stream
    operation: Operation
    row: dict[str, Any]
    position: str
    committed_at: datetime
    problem: str | None = None


@dataclass
class LogBatch:
    """Changes in log order, and the log position the source may be told is safe once they (and
    everything before them) landed: the end of the last whole transaction among them, or None.
    `reached`: with no changes, a position the log has moved to with nothing of ours before it,
    which the capture records so an idle integration does not fall behind the log's retention
    (MongoDB's resume token; a slot moves on its own)."""

    changes: list[LoggedChange] = field(default_factory=list)
    confirmable: Any = None
    reached: str | None = None


class PositionLost(Exception):
    """The server no longer has the log at our position (an invalidated slot, purged binary logs,
    an oplog that rolled past our resume token): the capture snapshots again."""


@dataclass(frozen=True)
class LogState:
    """What the server holds for us: the guardian's inputs. `lost` means the position we would
    resume from is gone (the slot was dropped or invalidated, the binlog purged)."""

    exists: bool
    lost: bool
    retained_bytes: int | None  # what the server keeps because we have not confirmed it
    safe_bytes: int | None  # how much more it may keep before it drops our position; None: no limit
    seconds_left: float | None = None  # by the server's own clock (binlog expiry), where it has one
    head: int | None = None  # the server's write position in bytes, for its write rate
    detail: str = ""


class SnapshotStart:
    """Where a log's snapshot began: the position its stream continues from, and when."""

    _start: str | None = None
    _started_at: datetime | None = None

    def _begin_snapshot(self, position: str) -> None:
        self._start, self._started_at = position, datetime.now(UTC)

    @property
    def start_position(self) -> str:
        if self._start is None:
            raise RuntimeError("no snapshot has been taken")
        return self._start

    @property
    def started_at(self) -> datetime:
        if self._started_at is None:
            raise RuntimeError("no snapshot has been taken")
        return self._started_at


class ChangeSession(Protocol):
    # Tables (or collections) truncated or dropped while reading: their rows cannot be named.
    truncated: list[str]

    def read(self, max_changes: int, max_wait_seconds: float) -> LogBatch:
        """Up to `max_changes` changes, waiting at most `max_wait_seconds` for the first."""

    def confirm(self, confirmable: Any) -> None:
        """Tells the server everything up to `confirmable` landed and may be released."""

    def keep_alive(self) -> None:
        """Answers the server and, when nothing of ours is in flight, lets an idle log move on."""

    def close(self) -> None: ...


class ChangeLog(Protocol):
    """A database's log, as one real-time integration reads it."""

    def problems(self, streams: list[Stream]) -> list[str]:
        """What keeps the server from streaming these tables' changes, each with the fix."""

    def state(self, position: str | None) -> LogState:
        """What the server holds for us now, given the position we have landed up to."""

    def snapshot(self, streams: list[Stream], page_size: int) -> Iterator[tuple[Stream, list[dict[str, Any]]]]:
        """Creates our position in the log and reads every table as of exactly that position,
        page by page; `start_position` is set once the first page is read."""

    @property
    def start_position(self) -> str: ...

    @property
    def started_at(self) -> datetime: ...

    def open(self, streams: list[Stream], after: str | None) -> ChangeSession:
        """Streams changes after our confirmed position (those at or before `after` may come
        again: the capture skips them)."""

    def release(self) -> None:
        """Drops what the server keeps for us (slot and publication): the integration left
        real-time mode or was deleted."""

    def close(self) -> None: ...


ChangeLogFactory = Callable[..., ChangeLog]
