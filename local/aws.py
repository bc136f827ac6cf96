"""moto in server mode, in this process, and boto3 clients pointed at it.

The server runs in-process so that the patched Lambda runtime (see `runtime.py`) is reached by
Step Functions tasks and `lambda.invoke`. The socket is bound in the caller's thread so that a
port already in use fails `start()` at once instead of hanging moto's start-up wait.
"""

from __future__ import annotations

import os
import threading
import uuid
from typing import Any

import boto3
import requests
from botocore.config import Config
from moto.core.common_models import BaseModel
from moto.core.config import default_user_config
from moto.moto_api._internal.models import moto_api_backend
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from local.net import bind_listener

FAKE_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


class _SharedMoto:
    """What every moto server of this process shares: the backends, moto's config and MOTO_PORT.

    moto keeps its state per process, so several local clouds in one process (a session-wide
    cloud in one test package, a module-wide one in another) see one set of backends. MOTO_PORT,
    which the Step Functions interpreter uses to reach Lambda, always names a running server; the
    last server to stop forgets every resource and restores what the first one found.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._servers: list[MotoServer] = []
        self._saved_port: str | None = None
        self._saved_config: dict[str, Any] = {}
        self._saved_new: Any = None

    def join(self, server: MotoServer) -> None:
        with self._lock:
            if not self._servers:
                self._saved_port = os.environ.get("MOTO_PORT")
                self._saved_config = dict(default_user_config.get("stepfunctions", {}))
                self._saved_new = BaseModel.__dict__["__new__"]
                BaseModel.__new__ = staticmethod(_untracked_new)  # type: ignore[assignment]
            self._servers.append(server)
            os.environ["MOTO_PORT"] = str(server.port)

    def leave(self, server: MotoServer) -> None:
        with self._lock:
            if server not in self._servers:
                return
            self._servers.remove(server)
            if self._servers:
                os.environ["MOTO_PORT"] = str(self._servers[-1].port)
                return
            if self._saved_port is None:
                os.environ.pop("MOTO_PORT", None)
            else:
                os.environ["MOTO_PORT"] = self._saved_port
            default_user_config["stepfunctions"] = self._saved_config  # type: ignore[typeddict-item]
            BaseModel.__new__ = self._saved_new  # type: ignore[method-assign]
            moto_api_backend.reset()


def _untracked_new(cls: type, *args: Any, **kwargs: Any) -> Any:
    """BaseModel.__new__ without the append to `cls.instances_tracked`.

    moto keeps every model object it ever creates in a class-level list, for its server's
    dashboard; nothing removes them. A local cloud that runs for hours kept every SQS message,
    every execution and, worst, the full copy of the table each DynamoDB transaction takes as its
    rollback point: memory grew by about 55 KB per integration created. The dashboard
    (/moto-api/) is not used here; resets clear backends as before.
    """
    return super(BaseModel, cls).__new__(cls)


def _one_request_at_a_time(app: Any) -> Any:
    """moto's backends are not thread-safe (a DynamoDB query iterates a table's items while
    another request adds one: "dictionary changed size during iteration"), and the local cloud's
    functions call it from many threads at once. Requests are served one at a time, except Lambda
    invocations, whose handlers call moto themselves."""
    lock = threading.Lock()

    def serve(environ: dict[str, Any], start_response: Any) -> Any:
        path = str(environ.get("PATH_INFO", ""))
        if path.startswith("/2015-03-31/functions/") and path.endswith("/invocations"):
            return app(environ, start_response)
        with lock:
            return list(app(environ, start_response))

    return serve


class MotoServer(ThreadedMotoServer):
    """moto's threaded server, bound synchronously so port conflicts raise `PortInUseError`."""

    def __init__(self, port: int) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)

    def start(self) -> None:
        """Serves, with moto's Step Functions interpreter switched on (as the design requires)."""
        listener = bind_listener(self._ip_address, self._port, "moto")
        try:
            self._server = make_server(
                self._ip_address,
                self._port,
                _one_request_at_a_time(DomainDispatcherApplication(create_backend_app)),
                threaded=True,
                request_handler=_QuietHandler,
                fd=listener.fileno(),
            )
        finally:
            listener.close()
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()
        self._server_ready_event.set()
        _shared.join(self)
        response = requests.post(
            f"{self.url}/moto-api/config", json={"stepfunctions": {"execute_state_machine": True}}, timeout=10
        )
        response.raise_for_status()

    @property
    def port(self) -> int:
        return self.get_host_and_port()[1]

    @property
    def url(self) -> str:
        return f"http://{self._ip_address}:{self.port}"

    def stop(self) -> None:
        """Stops serving; the last server of the process also forgets every resource."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server = None
        _shared.leave(self)


_shared = _SharedMoto()


class _QuietHandler(MotoRequestHandler):
    """Drops werkzeug's per-request access log: moto calls are not what a developer watches."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        return None


def name_unnamed_executions() -> None:
    """Patches moto's executing Step Functions backend to name unnamed executions with a UUID.

    moto 5.2.5 names them "None", so a second `start_execution` without a name fails with
    ExecutionAlreadyExists; AWS generates a UUID. The module is imported only here, when a state
    machine is created, because it takes about two seconds to import.
    """
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    original = StepFunctionsParserBackend.start_execution
    if getattr(original, "names_executions", False):
        return

    def start_execution(
        backend: StepFunctionsParserBackend,
        state_machine_arn: str,
        name: Any = None,
        execution_input: Any = None,
        trace_header: Any = None,
    ) -> Any:
        return original(backend, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)

    start_execution.names_executions = True  # type: ignore[attr-defined]
    StepFunctionsParserBackend.start_execution = start_execution  # type: ignore[method-assign,assignment]


class Clients:
    """Cached, thread-safe boto3 clients against the moto server, with fake credentials."""

    def __init__(self, endpoint_url: str, region: str) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        self._session = boto3.session.Session(region_name=region, **FAKE_CREDENTIALS)
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()

    def __call__(self, service: str) -> Any:
        with self._lock:
            if service not in self._clients:
                self._clients[service] = self._session.client(
                    service,
                    endpoint_url=self.endpoint_url,
                    config=Config(retries={"mode": "standard", "max_attempts": 2}, connect_timeout=5, read_timeout=65),
                )
            return self._clients[service]
