"""The lookback window's rules, without a source: where the next read starts, which re-read rows
are skipped, what is remembered, and that it survives the stored state."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from churnguard.connectors.base import Connector, Position, Stream
from churnguard.connectors.lookback import MAX_RECENT_ROWS, LookbackFilter, Recent, instant, start_of_next_read
from churnguard.models import DataSyncMode

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
WINDOW = 300


def row(key: int, at: datetime | None) -> dict[str, Any]:
    return {"id": key, "updated_at": at, "name": f"row {key}"}


def key_and_cursor(record: dict[str, Any]) -> tuple[tuple[Any, ...], Any]:
    return (record["id"],), record["updated_at"]


class StateOnly(Connector):
    """A connector of which only the state rules (and the lookback start) are used."""

    def __init__(self) -> None:
        """No configuration: nothing here connects."""

    translate = _ping = _discover = _probe = _count = _pages = close = None  # type: ignore[assignment]


STATE = StateOnly()


def reader(recent: Recent | None, *, ordered: bool) -> LookbackFilter:
    return LookbackFilter(WINDOW, recent, key_and_cursor, STATE.encode_value, ordered=ordered, clock=NOW.timestamp)


def read(pages: list[list[dict[str, Any]]], recent: Recent | None, *, ordered: bool) -> tuple[list[int], Recent]:
    lookback = reader(recent, ordered=ordered)
    kept: list[int] = []
    for page in pages:
        kept += [r["id"] for r in lookback.rows(page)]
    return kept, lookback.recent()


def test_history_older_than_the_window_is_never_read_again() -> None:
    old = NOW - timedelta(days=400)
    _, recent = read([[row(1, old), row(2, old + timedelta(seconds=1))]], None, ordered=True)
    assert recent.seen == {}
    cursor, rewound = start_of_next_read(old + timedelta(seconds=1), recent, WINDOW)
    assert (cursor, rewound) == (old + timedelta(seconds=1), False)


@pytest.mark.parametrize("ordered", [True, False])
def test_a_row_committed_late_is_read_and_the_rows_read_before_are_skipped(ordered: bool) -> None:
    early, later = NOW - timedelta(seconds=20), NOW - timedelta(seconds=10)
    first, recent = read([[row(1, early), row(3, later)]], None, ordered=ordered)
    assert first == [1, 3] and set(recent.seen.values()) == {instant(early), instant(later)}

    start, rewound = start_of_next_read(later, recent, WINDOW)
    assert rewound and start == NOW - timedelta(seconds=WINDOW)
    # Row 2 has the earlier time but became visible only after the first read.
    again = [row(1, early), row(2, early), row(3, later)]
    second, after = read([again], recent.next_read(), ordered=ordered)
    assert second == [2]
    assert len(after.seen) == 3, "the rows of the window are remembered for the read after"


def test_a_row_that_changed_again_is_written_with_its_new_cursor() -> None:
    at = NOW - timedelta(seconds=30)
    _, recent = read([[row(1, at)]], None, ordered=True)
    kept, _ = read([[row(1, at + timedelta(seconds=5))]], recent.next_read(), ordered=True)
    assert kept == [1]


def test_rows_to_skip_are_found_across_pages_and_forgotten_once_passed() -> None:
    stamps = [NOW - timedelta(seconds=100 - i) for i in range(6)]
    _, recent = read([[row(i, stamps[i]) for i in range(4)]], None, ordered=True)
    lookback = reader(recent.next_read(), ordered=True)
    assert [r["id"] for r in lookback.rows([row(0, stamps[0]), row(1, stamps[1])])] == []
    assert [r["id"] for r in lookback.rows([row(2, stamps[2]), row(9, stamps[2]), row(3, stamps[3])])] == [9]
    assert [r["id"] for r in lookback.rows([row(4, stamps[4]), row(5, stamps[5])])] == [4, 5]
    assert lookback.recent().skip == {}, "past the last row to skip, nothing more is checked"


def test_at_most_max_recent_rows_are_remembered_the_newest_kept() -> None:
    rows = [row(i, NOW - timedelta(seconds=60) + timedelta(milliseconds=i)) for i in range(MAX_RECENT_ROWS + 50)]
    for ordered in (True, False):
        _, recent = read([rows[:700], rows[700:]], None, ordered=ordered)
        assert len(recent.seen) == MAX_RECENT_ROWS
        assert min(recent.seen.values()) == instant(rows[50]["updated_at"])
        # The forgotten rows, re-read, are written again (with the same dedupe key as before).
        kept, _ = read([rows], recent.next_read(), ordered=ordered)
        assert kept == list(range(50))


def test_cursors_that_are_not_times_have_no_window() -> None:
    lookback = LookbackFilter(
        WINDOW, None, lambda r: ((r["id"],), r["version"]), str, ordered=True, clock=NOW.timestamp
    )
    assert lookback.rows([{"id": 1, "version": 7}]) == [{"id": 1, "version": 7}]
    assert lookback.recent().seen == {}
    assert start_of_next_read(7, lookback.recent(), WINDOW) == (7, False)


def test_naive_times_and_dates_rewind_in_their_own_type() -> None:
    recent = Recent(since=(NOW - timedelta(seconds=WINDOW)).timestamp())
    start, rewound = start_of_next_read(NOW.replace(tzinfo=None), recent, WINDOW)
    assert rewound and start == (NOW - timedelta(seconds=WINDOW)).replace(tzinfo=None)
    start, rewound = start_of_next_read(NOW.date(), Recent(since=recent.since - 86_400), WINDOW)
    assert rewound and start == date(2026, 12, 6)


def test_the_window_survives_the_stored_state_and_stays_small() -> None:
    rows = [row(i, NOW - timedelta(seconds=i % 7)) for i in range(MAX_RECENT_ROWS)]
    _, recent = read([rows], None, ordered=False)
    connector = STATE
    stream = Stream(
        entity="customer",
        source="customers",
        primary_key=("id",),
        cursor_field="updated_at",
        sync_modes=frozenset({DataSyncMode.INCREMENTAL}),
        lookback_seconds=WINDOW,
    )
    state = connector.state_of(stream, Position(cursor=NOW, key=(5,), recent=recent))
    stored = json.loads(json.dumps(state))
    assert len(json.dumps(stored["recent"])) < 20 * MAX_RECENT_ROWS
    back = connector.position_of(stream, stored)
    assert back == Position(cursor=NOW, key=(5,), recent=recent)
    assert connector.next_read_start(stream, back) == Position(
        cursor=datetime.fromtimestamp(recent.since or 0, UTC), recent=recent.next_read()
    )


def test_a_stream_without_a_window_starts_where_the_last_read_ended() -> None:
    connector = STATE
    stream = Stream(
        entity="customer",
        source="customers",
        primary_key=("id",),
        cursor_field="updated_at",
        sync_modes=frozenset({DataSyncMode.INCREMENTAL}),
    )
    position = Position(cursor=NOW, key=(5,), recent=Recent(since=NOW.timestamp() - 10))
    assert connector.next_read_start(stream, position) == position
