"""A batch's parts written under its partition's checkpoint: the one protocol the stream
processor and change data capture both land with (their module notes say why it lands each
message once). The checkpoint records the attempt's range and parts before they are written, so a
later attempt that covers less removes what the interrupted one left; the caller moves the
checkpoint once everything else that belongs to the batch is stored."""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import asdict
from typing import Any

from churnguard.pipeline.sinks import Part, PartKey, Sink
from churnguard.store.streams import Checkpoint, StreamStore


def key_text(key: PartKey) -> str:
    """A part's key as a checkpoint stores it."""
    return json.dumps(asdict(key), separators=(",", ":"))


def key_of(text: str) -> PartKey:
    return PartKey(**json.loads(text))


def discard(sinks: Sequence[Sink], stored: Iterable[str], keep: Collection[PartKey] = ()) -> None:
    """Removes the parts `stored` names from every sink, except those in `keep`."""
    for text in stored:
        key = key_of(text)
        if key in keep:
            continue
        for sink in sinks:
            sink.discard(key)


def write_attempt(
    store: StreamStore,
    sinks: Sequence[Sink],
    scope: str,
    partition: str,
    seen: Checkpoint,
    span: tuple[str, str],
    parts: Sequence[Part],
    order: Callable[[str], Any],
) -> Checkpoint:
    """Writes `parts` (the batch from `span`'s first position to its last) to every sink as an
    attempt recorded on the checkpoint; the checkpoint as now stored. An earlier attempt's parts are
    removed first unless this one starts where it did and reaches at least as far (`order`: how
    positions compare), which rewrites them."""
    start, end = span
    keys = [part.key for part in parts]
    if seen.attempt_start is not None:
        covers = seen.attempt_start == start and order(end) >= order(seen.attempt_end or end)
        if not covers:
            discard(sinks, seen.attempt_parts, keep=keys)
    attempt = store.begin_attempt(scope, partition, seen, start, end, [key_text(key) for key in keys])
    for part in parts:
        for sink in sinks:
            sink.write(part)
    return attempt
