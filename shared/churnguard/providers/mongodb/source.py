"""MongoDB, with pymongo: keyset order on (cursor field, _id), projections, batch sizes.

What it reads, its limits and quirks: README.md in this folder."""

from __future__ import annotations

from collections.abc import Generator
from itertools import islice
from typing import Any

import pymongo
import pymongo.errors
from bson import Code, Decimal128, ObjectId, Regex, Timestamp

from churnguard.connectors.base import (
    CheckStatus,
    Page,
    Position,
    SourceError,
    Stream,
    TransientSourceError,
    position_after,
)
from churnguard.connectors.database import DatabaseConnector, flag
from churnguard.connectors.tls import ca_file
from churnguard.models import DataSyncMode, ProviderName, SourceOptions
from churnguard.pipeline.encoding import register_encoder

TIMEOUT_MS = 10_000
SOCKET_TIMEOUT_MS = 300_000
# (error codes, kind, transient, message); the first match wins.
_ERROR_RULES: tuple[tuple[frozenset[int], CheckStatus, bool, str], ...] = (
    (frozenset({18}), CheckStatus.AUTHENTICATION_FAILED, False, "MongoDB at {address} refused the configured login"),
    (frozenset({13}), CheckStatus.MISSING_PRIVILEGES, False, "the configured user may not read the source"),
    (
        frozenset({6, 7, 50, 89, 91, 189, 262, 9001, 10107, 11600, 11602, 13435, 13436}),
        CheckStatus.ERROR,
        True,
        "MongoDB could not complete the read (error {code}); it will be retried",
    ),
)

register_encoder(ObjectId, str)
register_encoder(Decimal128, lambda value: str(value.to_decimal()))
register_encoder(Timestamp, lambda value: {"$timestamp": {"t": value.time, "i": value.inc}})
register_encoder(Regex, lambda value: value.pattern)
register_encoder(Code, str)


class MongoConnector(DatabaseConnector):
    provider = ProviderName.MONGODB

    _client: Any = None

    def _database(self) -> Any:
        settings = self._settings()
        if self._client is None:
            options: dict[str, Any] = {
                # The name, checked by the guard: TLS and replica-set discovery need it. Members a
                # replica set announces later are the server's choice, not the tenant's.
                "host": settings.host,
                "port": settings.port,
                "tz_aware": True,
                "document_class": dict,
                "appname": "churnguard-sync",
                "serverSelectionTimeoutMS": TIMEOUT_MS,
                "connectTimeoutMS": TIMEOUT_MS,
                "socketTimeoutMS": SOCKET_TIMEOUT_MS,
            }
            if settings.username:
                options.update(
                    username=settings.username,
                    password=settings.password,
                    authSource=settings.options.get("authSource", settings.database),
                )
            if settings.options.get("replicaSet"):
                options["replicaSet"] = settings.options["replicaSet"]
            if "directConnection" in settings.options:
                options["directConnection"] = flag(settings.options["directConnection"])
            if flag(settings.options.get("tls")) or settings.options.get("tlsCAFile"):
                options["tls"] = True
                if settings.options.get("tlsCAFile"):
                    options["tlsCAFile"] = ca_file(settings.options["tlsCAFile"])
            self._client = pymongo.MongoClient(**options)
        return self._client[settings.database]

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        self._client = None

    def _ping(self) -> None:
        self._database().command("ping")

    def _discover(
        self, entity: str, source: str | None, options: SourceOptions, wanted: frozenset[str] | None
    ) -> Stream:
        if options.query:
            raise SourceError(CheckStatus.INVALID_CONFIGURATION, "MongoDB entities are collections, not queries")
        if source is None:
            raise SourceError(CheckStatus.INVALID_CONFIGURATION, f"entity {entity!r} names no collection")
        database = self._database()
        if source not in database.list_collection_names(filter={"name": source}):
            raise SourceError(CheckStatus.MISSING_OBJECT, f"collection {source} does not exist")
        key = tuple(options.primary_key or ["_id"])
        cursor_field: str | None = self.cursor_field_for(entity)
        collection = database[source]
        if collection.find_one({}, projection={"_id": 1}) is not None and (
            collection.find_one({cursor_field: {"$exists": True}}, projection={"_id": 1}) is None
        ):
            if options.cursor_field:
                raise SourceError(
                    CheckStatus.INVALID_CONFIGURATION, f"no document in {source} has the field {cursor_field!r}"
                )
            cursor_field = None
        fields = None
        if wanted is not None:
            fields = tuple(sorted(wanted | set(key) | ({cursor_field} if cursor_field else set())))
        modes = {DataSyncMode.FULL_SYNC} | ({DataSyncMode.INCREMENTAL} if cursor_field else set())
        return Stream(
            entity=entity,
            source=source,
            primary_key=key,
            cursor_field=cursor_field,
            sync_modes=frozenset(modes),
            fields=fields,
            lookback_seconds=self.lookback_for(entity) if cursor_field else 0,
        )

    def _probe(self, stream: Stream) -> None:
        self._database()[stream.source].find_one({}, projection={"_id": 1})

    def _count(self, stream: Stream, position: Position) -> int | None:
        collection = self._database()[stream.source]
        query = _filter(stream, position)
        return int(collection.count_documents(query) if query else collection.estimated_document_count())

    def _pages(self, stream: Stream, position: Position, page_size: int, encoded: bool) -> Generator[Page, None, None]:
        order = [(name, pymongo.ASCENDING) for name in ((stream.cursor_field,) if stream.cursor_field else ())]
        order += [(name, pymongo.ASCENDING) for name in stream.primary_key]
        projection = None if stream.fields is None else dict.fromkeys(stream.fields, 1)
        cursor = (
            self._database()[stream.source]
            .find(_filter(stream, position), projection=projection)
            .sort(order)
            .batch_size(page_size)
        )
        try:
            while documents := list(islice(cursor, page_size)):
                yield Page(documents, position_after(documents[-1], stream.cursor_field, stream.primary_key))
        finally:
            cursor.close()

    def encode_value(self, value: Any) -> Any:
        if isinstance(value, ObjectId):
            return {"$oid": str(value)}
        if isinstance(value, Decimal128):
            return {"$decimal128": str(value)}
        return super().encode_value(value)

    def decode_value(self, value: Any) -> Any:
        if isinstance(value, dict) and len(value) == 1:
            if "$oid" in value:
                return ObjectId(value["$oid"])
            if "$decimal128" in value:
                return Decimal128(value["$decimal128"])
        return super().decode_value(value)

    def translate(self, exc: BaseException) -> SourceError | None:
        if isinstance(exc, pymongo.errors.OperationFailure):
            code = exc.code or 0
            for codes, kind, transient, message in _ERROR_RULES:
                if code in codes:
                    error = TransientSourceError if transient else SourceError
                    return error(
                        kind, message.format(address=self._address(), code=code), details={"mongodb_error": code}
                    )
            return SourceError(
                CheckStatus.ERROR, f"MongoDB failed the read (error {code})", details={"mongodb_error": code}
            )
        if isinstance(exc, pymongo.errors.ConnectionFailure):
            return TransientSourceError(CheckStatus.UNREACHABLE, f"could not reach MongoDB at {self._address()}")
        if isinstance(exc, pymongo.errors.ConfigurationError):
            return SourceError(CheckStatus.INVALID_CONFIGURATION, "the MongoDB connection options are not valid")
        if isinstance(exc, pymongo.errors.PyMongoError):
            return SourceError(CheckStatus.ERROR, f"MongoDB failed the read ({type(exc).__name__})")
        return None

    def _address(self) -> str:
        try:
            return self._settings().address
        except SourceError:
            return "the configured address"


def _filter(stream: Stream, position: Position) -> dict[str, Any]:
    key = stream.primary_key[0] if len(stream.primary_key) == 1 else None
    if key is None:
        raise SourceError(CheckStatus.INVALID_CONFIGURATION, "MongoDB streams have a single-field key (_id)")
    cursor = stream.cursor_field
    if cursor is None:
        return {} if position.key is None else {key: {"$gt": position.key[0]}}
    if position.key is None:
        return {} if position.cursor is None else {cursor: {"$gte": position.cursor}}
    if position.cursor is None:
        return {"$or": [{cursor: None, key: {"$gt": position.key[0]}}, {cursor: {"$ne": None}}]}
    return {"$or": [{cursor: {"$gt": position.cursor}}, {cursor: position.cursor, key: {"$gt": position.key[0]}}]}
