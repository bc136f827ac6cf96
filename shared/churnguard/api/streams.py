"""Routes for streams: registration, control, metrics and the quarantine."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Annotated

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body

from churnguard.api.http import caller_organization
from churnguard.errors import NotFoundError
from churnguard.stream_models import (
    QuarantinePage,
    ReplayRequest,
    ReplayResult,
    StreamCreated,
    StreamCreateRequest,
    StreamList,
    StreamMetrics,
    StreamStatus,
    StreamUpdateRequest,
    StreamView,
)

if TYPE_CHECKING:
    from churnguard.streaming.service import StreamService

router = Router()
_STREAM_ID = re.compile(r"^str_[0-9a-f]{16}$")


@cache
def service() -> StreamService:
    from churnguard.wiring.streams import stream_service

    return stream_service()


def stream_id_or_404(stream_id: str) -> str:
    """An id that cannot exist is answered like an unknown one, without a lookup."""
    if not _STREAM_ID.match(stream_id):
        raise NotFoundError("stream not found", {"stream_id": stream_id[:64]})
    return stream_id


@router.post("/api/streaming/streams", status_code=201, tags=["streams"], summary="Register a stream")
def create_stream(body: Annotated[StreamCreateRequest, Body()]) -> StreamCreated:
    return service().create(caller_organization(router), body)


@router.get("/api/streaming/streams", tags=["streams"], summary="List the organisation's streams")
def list_streams() -> StreamList:
    return service().list_streams(caller_organization(router))


@router.get("/api/streaming/streams/<stream_id>", tags=["streams"], summary="Get a stream")
def get_stream(stream_id: str) -> StreamView:
    return service().get(caller_organization(router), stream_id_or_404(stream_id))


@router.patch("/api/streaming/streams/<stream_id>", tags=["streams"], summary="Change a stream's settings")
def update_stream(stream_id: str, body: Annotated[StreamUpdateRequest, Body()]) -> StreamView:
    return service().update(caller_organization(router), stream_id_or_404(stream_id), body)


@router.delete(
    "/api/streaming/streams/<stream_id>", status_code=204, tags=["streams"], summary="Delete a stream and its mapping"
)
def delete_stream(stream_id: str) -> Response[None]:
    service().delete(caller_organization(router), stream_id_or_404(stream_id))
    return Response(status_code=204, body=None)


@router.post("/api/streaming/streams/<stream_id>/pause", tags=["streams"], summary="Pause a stream")
def pause_stream(stream_id: str) -> StreamView:
    return service().set_status(caller_organization(router), stream_id_or_404(stream_id), StreamStatus.PAUSED)


@router.post("/api/streaming/streams/<stream_id>/resume", tags=["streams"], summary="Resume a paused stream")
def resume_stream(stream_id: str) -> StreamView:
    return service().set_status(caller_organization(router), stream_id_or_404(stream_id), StreamStatus.ACTIVE)


@router.get(
    "/api/streaming/streams/<stream_id>/metrics",
    tags=["streams"],
    summary="Messages/s, processing time, error rate and lag over the last five minutes",
)
def stream_metrics(stream_id: str) -> StreamMetrics:
    return service().metrics(caller_organization(router), stream_id_or_404(stream_id))


@router.get(
    "/api/streaming/streams/<stream_id>/quarantine",
    tags=["streams"],
    summary="Messages set aside because they could not become records",
)
def stream_quarantine(stream_id: str) -> QuarantinePage:
    return service().quarantine(caller_organization(router), stream_id_or_404(stream_id))


@router.post(
    "/api/streaming/streams/<stream_id>/quarantine/replay",
    tags=["streams"],
    summary="Land quarantined messages with the stream's current settings",
)
def replay_quarantine(stream_id: str, body: Annotated[ReplayRequest, Body()]) -> ReplayResult:
    return service().replay(caller_organization(router), stream_id_or_404(stream_id), body.message_ids)
