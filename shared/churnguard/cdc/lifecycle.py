"""A real-time database integration's capture, kept in step with its configuration: the
integration service calls `apply` after each change and `remove` before a deletion (the
`RealtimeHook` of churnguard.integrations)."""

from __future__ import annotations

import logging

from churnguard.cdc.capture import IDLE, OpenLog, captures_changes, open_change_log
from churnguard.cdc_models import CaptureState
from churnguard.continuous import ConsumerKind, ConsumerWorkflow
from churnguard.integrations import IntegrationService
from churnguard.models import IntegrationConfiguration
from churnguard.store.cdc import CaptureStore

logger = logging.getLogger(__name__)


class CaptureLifecycle:
    def __init__(
        self,
        captures: CaptureStore,
        credentials: IntegrationService,
        workflow: ConsumerWorkflow,
        open_log: OpenLog = open_change_log,
    ) -> None:
        """`credentials`: a service without this hook, for the credentials a removal needs."""
        self._captures = captures
        self._service = credentials
        self._workflow = workflow
        self._open_log = open_log

    def apply(self, config: IntegrationConfiguration) -> None:
        """Makes the capture match the integration: a consumer running while it is a real-time
        database integration and not idle (inactive, paused, refused login); stopped, its position
        kept, while idle; released (slot and publication dropped) when it leaves real-time mode."""
        state = self._captures.find(config.organization_id, config.integration_id)
        if not captures_changes(config):
            if state is not None:
                self.remove(config)
            return
        if config.status in IDLE:
            if state is not None and state.consumer_execution:
                self._workflow.stop(state.consumer_execution, "the integration was paused")
                self._captures.update(config.organization_id, config.integration_id, consumer_execution=None)
            return
        if state is not None and state.consumer_execution is not None:
            return
        # Started first: an execution that finds no state of its own ends at once.
        execution = self._workflow.start(config.organization_id, config.integration_id, ConsumerKind.CHANGES)
        if state is None:
            self._captures.save(
                CaptureState(
                    organization_id=config.organization_id,
                    integration_id=config.integration_id,
                    consumer_execution=execution,
                )
            )
        else:
            self._captures.update(
                config.organization_id, config.integration_id, consumer_execution=execution, problems=[]
            )

    def remove(self, config: IntegrationConfiguration) -> None:
        """Stops the consumer and drops what the server keeps for us; the integration was deleted
        or left real-time mode. A server that cannot be reached keeps its slot, which is logged:
        its WAL then grows until someone drops it."""
        state = self._captures.find(config.organization_id, config.integration_id)
        if state is None:
            return
        if state.consumer_execution:
            self._workflow.stop(state.consumer_execution, "the integration left real-time mode")
        self._captures.delete(config.organization_id, config.integration_id)
        try:
            credentials = self._service.load_credentials(config.organization_id, config.integration_id)
            _, log = self._open_log(config, credentials)
            try:
                log.release()
            finally:
                log.close()
        except Exception as exc:
            logger.error(
                "could not drop the integration's replication slot; drop it on the server",
                extra={"integration_id": config.integration_id, "error": type(exc).__name__},
            )
