"""The continuous consumer workflow (statemachines/stream_consumer.asl.json): time-budgeted turns
in a loop, for what no event source mapping can read: Redis streams and WebSocket feeds
(streaming.consumers) and databases' logs (cdc.capture). `kind` says which a turn is for."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

# A turn hands over to a fresh execution after this many, so the execution history stays small.
TURNS_PER_EXECUTION = 200


class ConsumerKind(StrEnum):
    STREAM = "stream"
    CHANGES = "cdc"


class ConsumerWorkflow:
    """Starts and stops continuous consumer workflow executions."""

    def __init__(self, stepfunctions: Any, state_machine_arn: str, clock: Callable[[], float] = time.time) -> None:
        self._sfn = stepfunctions
        self._state_machine = state_machine_arn
        self._clock = clock

    def start(self, organization_id: str, consumer_id: str, kind: ConsumerKind = ConsumerKind.STREAM) -> str:
        """Starts an execution for a stream or a real-time integration (`consumer_id`); its ARN
        is what each turn checks it still owns the consumer with."""
        response = self._sfn.start_execution(
            stateMachineArn=self._state_machine,
            name=f"{consumer_id}-{int(self._clock() * 1000)}",
            input=orjson.dumps(
                {"organization_id": organization_id, "stream_id": consumer_id, "kind": kind.value, "iteration": 0}
            ).decode(),
        )
        execution: str = response["executionArn"]
        return execution

    def stop(self, execution: str, cause: str = "the stream was paused or deleted") -> None:
        try:
            self._sfn.stop_execution(executionArn=execution, cause=cause)
        except self._sfn.exceptions.ExecutionDoesNotExist:
            return


@dataclass(frozen=True)
class TurnOutcome:
    keep_going: bool
    iteration: int
    forwarded: int = 0
    quarantined: int = 0
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "continue": self.keep_going,
            "iteration": self.iteration,
            "forwarded": self.forwarded,
            "quarantined": self.quarantined,
            "reason": self.reason,
        }
