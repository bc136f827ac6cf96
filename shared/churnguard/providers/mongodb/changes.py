"""MongoDB's change streams for change data capture, with resume tokens. What it needs from the
server and its quirks: README.md here. No MongoDB server can run on the machines our CI uses: the
tests of this module run against a real server only when MONGODB_URI is set."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC
from typing import Any

import pymongo
import pymongo.errors
from bson import Timestamp

from churnguard.connectors.base import Position, Stream
from churnguard.connectors.changes import LogBatch, LoggedChange, LogState, PositionLost, SnapshotStart
from churnguard.pipeline.core import CHANGE_CURSOR, CHANGE_TIME
from churnguard.pipeline.records import Operation
from churnguard.providers.mongodb.source import MongoConnector

_HISTORY_LOST = 286  # ChangeStreamHistoryLost: the oplog no longer holds our resume token
_NOT_AUTHORIZED = 13
_UPSERTS = frozenset({"insert", "update", "replace"})
AWAIT_MS = 500


def token_position(token: dict[str, Any]) -> str:
    """A resume token as a position: its `_data`, hex of a key string that sorts in event order
    and starts with the event's cluster time (type byte 0x82, then seconds and increment)."""
    return str(token["_data"]).upper()


def time_position(moment: Timestamp) -> str:
    """A cluster time as a position, in the tokens' own form: every event at or after it sorts after."""
    return f"82{moment.time:08X}{moment.inc:08X}"


_TIME_POSITION_LENGTH = 18


class MongoChangeLog(SnapshotStart):
    def __init__(self, connector: MongoConnector, integration_id: str) -> None:
        self._connector = connector

    def _database(self) -> Any:
        return self._connector._database()

    def close(self) -> None:
        self._connector.close()

    def problems(self, streams: list[Stream]) -> list[str]:
        hello = self._database().command("hello")
        if "setName" not in hello and hello.get("msg") != "isdbgrid":
            return ["change streams need a replica set or a sharded cluster (a single-node replica set will do)"]
        try:
            with self._watch(streams, None) as stream:
                stream.try_next()
        except pymongo.errors.OperationFailure as exc:
            if exc.code == _NOT_AUTHORIZED:
                return ["the user may not open change streams: grant it the changeStream and find actions"]
            raise
        return []

    def _watch(self, streams: list[Stream], after: str | None) -> Any:
        collections = [stream.source for stream in streams]
        options: dict[str, Any] = {"full_document": "updateLookup", "max_await_time_ms": AWAIT_MS}
        if after is not None and len(after) == _TIME_POSITION_LENGTH:  # the snapshot's start
            options["start_at_operation_time"] = Timestamp(int(after[2:10], 16), int(after[10:18], 16))
        elif after is not None:
            options["resume_after"] = {"_data": after}
        return self._database().watch([{"$match": {"ns.coll": {"$in": collections}}}], **options)

    # ------------------------------------------------------------------ snapshot
    def snapshot(self, streams: list[Stream], page_size: int) -> Iterator[tuple[Stream, list[dict[str, Any]]]]:
        """Notes the cluster time, then reads every collection. MongoDB exports no snapshot to
        stream from, so a document changed while it is read may arrive again as a change after
        the start: never a gap, possibly a repeat (its own version, in order)."""
        operation_time = self._database().command("ping")["operationTime"]
        self._begin_snapshot(time_position(operation_time))
        for stream in streams:
            for page in self._connector._pages(stream, Position(), page_size, encoded=False):
                yield stream, page.rows

    # ------------------------------------------------------------------ streaming
    def open(self, streams: list[Stream], after: str | None) -> MongoSession:
        try:
            watched = self._watch(streams, after)
        except pymongo.errors.OperationFailure as exc:
            if exc.code == _HISTORY_LOST:
                raise PositionLost("the oplog no longer holds our resume token") from None
            raise
        return MongoSession(watched, {stream.source: stream for stream in streams})

    # ------------------------------------------------------------------ guardian
    def state(self, position: str | None) -> LogState:
        """The oplog window past our position: how long until the oplog rolls over it at the
        rate it covers now (its oldest entry moves on as new ones arrive)."""
        client = self._database().client
        try:
            oplog = client["local"]["oplog.rs"]
            oldest = oplog.find_one({}, sort=[("$natural", pymongo.ASCENDING)], projection={"ts": 1})
            newest = oplog.find_one({}, sort=[("$natural", pymongo.DESCENDING)], projection={"ts": 1})
            size = int(client["local"].command("collStats", "oplog.rs")["size"])
        except pymongo.errors.OperationFailure:
            return LogState(True, False, None, None, detail="the oplog cannot be read (clusterMonitor role)")
        if oldest is None or newest is None or position is None:
            return LogState(True, False, None, None, detail="no position yet")
        ours = _position_time(position)
        first, last = oldest["ts"].time, newest["ts"].time
        window = max(1, last - first)
        retained = int(size * max(0, last - ours) / window) if ours is not None else None
        return LogState(
            exists=True,
            lost=ours is not None and ours < first,
            retained_bytes=retained,
            safe_bytes=None,
            seconds_left=max(0.0, float(ours - first)) if ours is not None else None,
            detail=f"oplog window {window} s; our position is {last - (ours or last)} s behind its newest entry",
        )

    def release(self) -> None:
        """The server keeps nothing for us: the oplog rolls over on its own schedule."""


class MongoSession:
    def __init__(self, watched: Any, collections: dict[str, Stream]) -> None:
        self._watched = watched
        self._collections = collections
        self.truncated: list[str] = []

    def read(self, max_changes: int, max_wait_seconds: float) -> LogBatch:
        batch = LogBatch()
        deadline = time.monotonic() + max_wait_seconds
        while len(batch.changes) < max_changes:
            try:
                event = self._watched.try_next()
            except pymongo.errors.OperationFailure as exc:
                if exc.code == _HISTORY_LOST:
                    raise PositionLost("the oplog no longer holds our resume token") from None
                raise
            if event is None:
                if batch.changes or time.monotonic() >= deadline:
                    break
                continue
            self._take(event, batch)
        if not batch.changes and self._watched.resume_token is not None:
            batch.reached = token_position(self._watched.resume_token)
        return batch

    def _take(self, event: dict[str, Any], batch: LogBatch) -> None:
        stream = self._collections.get(event.get("ns", {}).get("coll", ""))
        kind = event["operationType"]
        if kind in {"drop", "rename", "dropDatabase", "invalidate"}:
            self.truncated.append(str(event.get("ns", {}).get("coll", "")))
            return
        if stream is None:
            return
        if kind in _UPSERTS:
            document = event.get("fullDocument")
            if document is None:  # deleted before the lookup: its delete follows
                return
            operation, row = Operation.UPSERT, dict(document)
        elif kind == "delete":
            operation, row = Operation.DELETE, dict(event["documentKey"])
        else:
            return
        position = token_position(event["_id"])
        at = event["clusterTime"].as_datetime().astimezone(UTC)
        row[CHANGE_CURSOR] = position
        row[CHANGE_TIME] = at
        batch.changes.append(LoggedChange(stream, operation, row, position, at))

    def confirm(self, confirmable: Any) -> None:
        """Nothing to tell: the oplog is the server's, our resume token is the checkpoint."""

    def keep_alive(self) -> None:
        """The change stream's own getMore calls keep it open."""

    def close(self) -> None:
        self._watched.close()


def _position_time(position: str) -> int | None:
    """A position's cluster time in seconds (after the type byte, 4 bytes of seconds)."""
    try:
        return int(position[2:10], 16)
    except ValueError:
        return None
