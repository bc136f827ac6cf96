"""`LocalCloud`: the whole SAM application in one process, on moto, without Docker or AWS.

Start-up order matters: the HTTP ports and moto's port are bound first, so a port conflict fails
in milliseconds; then resources are created from the template, functions registered with the
in-process runtime, and the gateways and pollers started from the functions' events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from local.aws import Clients, MotoServer
from local.gateway import ApiGateway, GatewayServer, Route, build_http_api
from local.kafka import allow_self_managed_kafka
from local.pollers import (
    Clock,
    KinesisPoller,
    KinesisSource,
    MappingWatcher,
    ScheduleRunner,
    SqsPoller,
    SqsSource,
    Worker,
    utc_now,
)
from local.resources import Provisioner
from local.runtime import LambdaRuntime
from local.template import Template, TemplateError, load_yaml

logger = logging.getLogger("local.cloud")

DEFAULT_PORTS = {"ManagementApi": 8090, "WebhookApi": 8080}
# Parameter values the local cloud uses unless told otherwise, where the template declares them:
# provider fakes and local sources listen on 127.0.0.1, which REST ingestion rules refuse by default.
LOCAL_PARAMETER_DEFAULTS = {"AllowPrivateNetworkSources": "true"}
IMPLICIT_HTTP_API = "ServerlessHttpApi"

_running_lock = threading.Lock()
# The clouds running in this process, oldest first (a list, so it is mutated rather than rebound).
_running: list[LocalCloud] = []


class LocalCloud:
    """Runs a SAM template locally: moto resources, in-process Lambdas, HTTP APIs and pollers.

    moto's state is process-global: clouds running side by side in one process share it, so give
    them different stack names; the last one to stop forgets every resource. `invoke` raises
    `LambdaInvocationError` (with the Lambda error document as `.payload`) when the handler fails.
    """

    def __init__(
        self,
        template_path: Path,
        *,
        ports: Mapping[str, int] | None = None,
        moto_port: int = 0,
        region: str = "us-east-1",
        stack_name: str = "churnguard-local",
        parameter_overrides: Mapping[str, str] | None = None,
        clock: Clock | None = None,
        poll_interval: float = 0.25,
    ) -> None:
        self.template_path = Path(template_path)
        self.region = region
        self.stack_name = stack_name
        self.resources: dict[str, dict[str, Any]] = {}
        self.api_urls: dict[str, str] = {}
        self.aws_endpoint_url = ""
        self.template: Template | None = None
        self._ports = dict(ports or {})
        self._moto_port = moto_port
        self._parameter_overrides = dict(parameter_overrides or {})
        self._clock = clock or utc_now
        self._poll_interval = poll_interval
        self._moto: MotoServer | None = None
        self._clients: Clients | None = None
        self._runtime: LambdaRuntime | None = None
        self._gateways: dict[str, GatewayServer] = {}
        self._workers: list[Worker] = []
        self._owned: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> LocalCloud:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> LocalCloud:
        """Brings the cloud up; on any failure everything already started is stopped again."""
        with _running_lock:
            _running.append(self)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stops pollers, HTTP servers and moto (see the class docstring on state). Safe to call twice."""
        for worker in self._workers:
            worker.stop()
        self._workers = []
        for gateway in self._gateways.values():
            gateway.stop()
        self._gateways = {}
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        with _running_lock:
            if self in _running:
                _running.remove(self)

    def _start(self) -> None:
        declared = load_yaml(self.template_path).get("Parameters") or {}
        defaults = {name: value for name, value in LOCAL_PARAMETER_DEFAULTS.items() if name in declared}
        template = self.template = Template.load(
            self.template_path,
            region=self.region,
            stack_name=self.stack_name,
            parameter_overrides={**defaults, **self._parameter_overrides},
        )
        for logical_id in template.resources_of_type("AWS::Serverless::HttpApi"):
            self._bind_gateway(logical_id)
        self._moto = MotoServer(self._moto_port)
        self._moto.start()
        self.aws_endpoint_url = self._moto.url
        clients = self._clients = Clients(self.aws_endpoint_url, self.region)
        runtime = self._runtime = LambdaRuntime(
            region=self.region,
            account_id=template.account_id,
            endpoint_url=self.aws_endpoint_url,
            search_paths=_layer_paths(template),
        )
        runtime.open()
        allow_self_managed_kafka()
        provisioner = Provisioner(template, clients, api_endpoints=self.api_urls)
        provisioner.provision()
        for spec in provisioner.functions.values():
            runtime.register(spec)
        self._wire_events(provisioner, runtime, clients)
        self.resources = {logical_id: r.summary() for logical_id, r in provisioner.resources.items()}
        self._owned = {str(value) for r in provisioner.resources.values() for value in (r.arn, r.physical_id) if value}
        schedules = ScheduleRunner(
            clients, runtime, clock=self._clock, interval=self._poll_interval, owns=self._owns_target
        )
        self._workers.append(schedules)
        self._workers.append(
            MappingWatcher(
                clients,
                runtime,
                interval=1.0,
                poll_interval=self._poll_interval,
                role_arn=provisioner.execution_role_arn(),
            )
        )
        for worker in self._workers:
            worker.start()
        logger.info("local cloud %s is up: moto at %s", self.stack_name, self.aws_endpoint_url)

    def _owns_target(self, arn: str) -> bool:
        """Whether this cloud fires a schedule target: its own resources, or the oldest cloud
        running fires targets no cloud of this process created (moto's schedules are shared)."""
        with _running_lock:
            if arn in self._owned:
                return True
            if any(arn in other._owned for other in _running):
                return False
            return bool(_running) and _running[0] is self

    def _bind_gateway(self, logical_id: str) -> None:
        port = self._ports.get(logical_id, DEFAULT_PORTS.get(logical_id, 0))
        server = self._gateways[logical_id] = GatewayServer(logical_id, port)
        self.api_urls[logical_id] = server.url

    # ------------------------------------------------------------------ events
    def _wire_events(self, provisioner: Provisioner, runtime: LambdaRuntime, clients: Clients) -> None:
        """Turns function and state machine `Events` into routes, pollers and moto schedules."""
        template = provisioner.template
        http_events: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        api_ids = {provisioner.resources[lid].physical_id: lid for lid in self._gateways}
        for logical_id in template.resources_of_type("AWS::Serverless::Function"):
            spec = provisioner.functions[logical_id]
            for event_name, event in (provisioner.resolve_property(logical_id, "Events", {}) or {}).items():
                kind, props = event.get("Type"), event.get("Properties") or {}
                where = f"{logical_id}.Events.{event_name}"
                if kind == "HttpApi":
                    api = self._api_for(props.get("ApiId"), api_ids, provisioner, where)
                    http_events.setdefault(api, []).append((logical_id, props))
                elif kind in ("SQS", "Kinesis") and not _flag(props.get("Enabled", True)):
                    logger.info("%s is disabled", where)
                elif kind == "SQS":
                    self._workers.append(
                        SqsPoller(_sqs_source(logical_id, props), clients, runtime, interval=self._poll_interval)
                    )
                elif kind == "Kinesis":
                    role = spec.role_arn or provisioner.execution_role_arn()
                    source = _kinesis_source(logical_id, props)
                    self._workers.append(
                        KinesisPoller(source, clients, runtime, interval=self._poll_interval, role_arn=role)
                    )
                elif kind in ("Schedule", "ScheduleV2"):
                    _create_schedule(provisioner, clients, f"{logical_id}{event_name}", kind, props, spec.arn)
                else:
                    logger.warning("%s: event type %s is not emulated locally", where, kind)
        _wire_state_machine_events(provisioner, clients)
        for api_logical_id, server in self._gateways.items():
            http_api = build_http_api(
                api_logical_id,
                provisioner.resources[api_logical_id].physical_id,
                _api_auth(provisioner, api_logical_id),
                http_events.get(api_logical_id, []),
            )
            server.start(ApiGateway(http_api, runtime.invoke, region=self.region, account_id=template.account_id))

    def _api_for(self, api_ref: Any, api_ids: dict[str, str], provisioner: Provisioner, where: str) -> str:
        """The logical id of the API an HttpApi event names; no ApiId means SAM's implicit API."""
        if api_ref is None:
            if IMPLICIT_HTTP_API not in self._gateways:
                self._bind_gateway(IMPLICIT_HTTP_API)
                implicit = provisioner.record(IMPLICIT_HTTP_API, "AWS::Serverless::HttpApi")
                api_ids[implicit.physical_id] = IMPLICIT_HTTP_API
            return IMPLICIT_HTTP_API
        if api_ref not in api_ids:
            raise TemplateError(f"{where}: ApiId {api_ref!r} is not an AWS::Serverless::HttpApi of this template")
        return api_ids[api_ref]

    # ------------------------------------------------------------------ use
    def invoke(self, function_logical_id: str, event: Any) -> Any:
        """Invokes a function in-process; raises `LambdaInvocationError` if the handler fails."""
        return self._running_runtime().invoke_or_raise(function_logical_id, event)

    def function_environment(self, logical_id: str) -> dict[str, str]:
        """The environment variables the function's handler sees."""
        return self._running_runtime().environment(logical_id)

    def boto3_client(self, service: str) -> Any:
        """A boto3 client against this cloud's moto (shared, thread-safe)."""
        if self._clients is None:
            raise RuntimeError("the local cloud is not running")
        return self._clients(service)

    def routes(self, api_logical_id: str) -> list[Route]:
        """The routes an HTTP API serves (empty for an unknown API or a stopped cloud)."""
        server = self._gateways.get(api_logical_id)
        return [] if server is None or server.gateway is None else list(server.gateway.api.routes.routes)

    def physical_id(self, logical_id: str) -> str:
        return str(self.resources[logical_id]["physical_id"])

    def _running_runtime(self) -> LambdaRuntime:
        if self._runtime is None:
            raise RuntimeError("the local cloud is not running")
        return self._runtime


def _wire_state_machine_events(provisioner: Provisioner, clients: Clients) -> None:
    """State machines take schedule events only (what our templates use them for)."""
    for logical_id in provisioner.template.resources_of_type("AWS::Serverless::StateMachine"):
        target = str(provisioner.resources[logical_id].arn)
        for event_name, event in (provisioner.resolve_property(logical_id, "Events", {}) or {}).items():
            kind, props = event.get("Type"), event.get("Properties") or {}
            if kind in ("Schedule", "ScheduleV2"):
                _create_schedule(provisioner, clients, f"{logical_id}{event_name}", kind, props, target)
            else:
                logger.warning("%s.Events.%s: event type %s is not emulated locally", logical_id, event_name, kind)


def _api_auth(provisioner: Provisioner, api_logical_id: str) -> Any:
    """The resolved `Auth` of an API; the implicit API takes it from Globals.HttpApi."""
    template = provisioner.template
    if api_logical_id in template.resources:
        return provisioner.resolve_property(api_logical_id, "Auth")
    globals_api = (template.body.get("Globals") or {}).get("HttpApi") or {}
    return provisioner.resolver.resolve(globals_api.get("Auth"))


def _sqs_source(function: str, props: dict[str, Any]) -> SqsSource:
    if props.get("FilterCriteria"):
        logger.warning("%s: SQS FilterCriteria are not emulated; every message is delivered", function)
    return SqsSource(
        function=function,
        queue_arn=str(props["Queue"]),
        batch_size=int(props.get("BatchSize", 10)),
        batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
        report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
    )


def _kinesis_source(function: str, props: dict[str, Any]) -> KinesisSource:
    return KinesisSource(
        function=function,
        stream_arn=str(props["Stream"]),
        starting_position=str(props.get("StartingPosition", "LATEST")),
        starting_timestamp=props.get("StartingPositionTimestamp"),
        batch_size=int(props.get("BatchSize", 100)),
        bisect_on_error=_flag(props.get("BisectBatchOnFunctionError", False)),
        report_failures="ReportBatchItemFailures" in (props.get("FunctionResponseTypes") or []),
        maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
    )


def _create_schedule(
    provisioner: Provisioner, clients: Clients, logical_id: str, kind: str, props: dict[str, Any], target_arn: str
) -> None:
    """Creates the rule (Schedule) or schedule (ScheduleV2) that SAM would generate for an event."""
    if kind == "Schedule":
        name = str(props.get("Name") or provisioner.generated_name(logical_id))
        enabled = _flag(props.get("Enabled", True)) and props.get("State", "ENABLED") == "ENABLED"
        events = clients("events")
        events.put_rule(
            Name=name, ScheduleExpression=str(props["Schedule"]), State="ENABLED" if enabled else "DISABLED"
        )
        target: dict[str, Any] = {"Id": f"{logical_id}Target"[:64], "Arn": target_arn}
        if "Input" in props:
            target["Input"] = str(props["Input"])
        events.put_targets(Rule=name, Targets=[target])
        return
    request: dict[str, Any] = {
        key: props[key]
        for key in ("GroupName", "ScheduleExpressionTimezone", "StartDate", "EndDate", "State", "Description")
        if key in props
    }
    scheduler_target: dict[str, Any] = {"Arn": target_arn, "RoleArn": provisioner.execution_role_arn()}
    if "Input" in props:
        scheduler_target["Input"] = str(props["Input"])
    clients("scheduler").create_schedule(
        Name=str(props.get("Name") or provisioner.generated_name(logical_id)),
        ScheduleExpression=str(props["ScheduleExpression"]),
        FlexibleTimeWindow=props.get("FlexibleTimeWindow") or {"Mode": "OFF"},
        Target=scheduler_target,
        **request,
    )


def _flag(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _layer_paths(template: Template) -> list[Path]:
    """Directories that make layer code importable, as /opt/python does in Lambda."""
    paths: list[Path] = []
    layers = template.resources_of_type("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion")
    for resource in layers.values():
        uri = (resource.get("Properties") or {}).get("ContentUri")
        if isinstance(uri, str):
            directory = (template.directory / uri).resolve()
            paths.append(directory / "python" if (directory / "python").is_dir() else directory)
    shared = template.directory / "shared"
    if shared.is_dir():
        paths.append(shared.resolve())
    return list(dict.fromkeys(path for path in paths if path.is_dir()))
