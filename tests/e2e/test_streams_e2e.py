"""Streams through the local cloud over HTTP: a custom stream's HTTPS events and a customer's
Kinesis stream land in the lake exactly once; a poison message waits in quarantine and lands once
when replayed after a fix; pausing stops ingest; deleting removes the mapping."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import pytest
import requests

from tests.e2e.test_webhooks_e2e import lake_lines, wait_until


def _ingest(cloud: Any, stream_id: str, key: str, events: Any) -> requests.Response:
    return requests.post(
        f"{cloud.api_urls['WebhookApi']}/ingest/{stream_id}",
        data=json.dumps(events),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        timeout=30,
    )


def _records(cloud: Any, organization_id: str, provider: str) -> list[dict[str, Any]]:
    return lake_lines(cloud, f"org={organization_id}/provider={provider}/")


def test_custom_stream_events_land_once_and_poison_waits_in_quarantine(cloud: Any, new_tenant: Any) -> None:
    tenant = new_tenant(f"org_stream_{uuid.uuid4().hex[:8]}")
    created = tenant.request(
        "POST",
        "/api/streaming/streams",
        json={
            "name": "Product usage",
            "stream_type": "custom",
            "event_id_field": "event_id",
            "event_time_field": "at",
            "record_id_field": "event_id",
        },
    )
    assert created.status_code == 201, created.text
    stream = created.json()
    stream_id, key = stream["stream_id"], stream["ingest_key"]
    assert key.startswith("cgi_") and stream["ingest_key_prefix"] == key[:8]
    assert "ingest_key" not in tenant.request("GET", f"/api/streaming/streams/{stream_id}").json()

    listed = tenant.request("GET", "/api/integrations").json()["items"]
    shown = [item for item in listed if item["integration_id"] == stream_id]
    assert shown and shown[0]["integration_type"] == "streaming"
    assert shown[0]["sync_config"]["sync_mode"] == "real_time"

    events = [{"event_id": f"e{i}", "type": "login", "at": "2026-12-07T10:00:00Z", "n": i} for i in range(50)]
    first = _ingest(cloud, stream_id, key, events)
    assert first.status_code == 202, first.text
    assert first.json()["accepted"] == 50
    # The client retries half of them (a timeout on its side), and sends one without an id.
    again = _ingest(cloud, stream_id, key, [*events[:25], {"type": "login", "n": "poison"}])
    assert again.status_code == 202 and again.json()["accepted"] == 26

    def landed() -> list[dict[str, Any]]:
        return [line for line in _records(cloud, tenant.organization_id, "custom") if line.get("entity") == "event"]

    wait_until(lambda: len(landed()) >= 50, "50 events in the lake")
    quarantine = tenant.request("GET", f"/api/streaming/streams/{stream_id}/quarantine")
    wait_until(
        lambda: len(tenant.request("GET", f"/api/streaming/streams/{stream_id}/quarantine").json()["items"]) == 1,
        "the poison event in quarantine",
    )
    quarantine = tenant.request("GET", f"/api/streaming/streams/{stream_id}/quarantine").json()["items"]
    assert "record_id_field" in quarantine[0]["error"]
    records = landed()
    assert sorted(r["record_id"] for r in records) == sorted(f"e{i}" for i in range(50)), "each event exactly once"
    assert records[0]["data"]["event_type"] == "login"
    assert records[0]["event_time"].startswith("2026-12-07T10:00:00")

    # The fix: records without an id of their own take the event's identity.
    patched = tenant.request("PATCH", f"/api/streaming/streams/{stream_id}", json={"record_id_field": None})
    assert patched.status_code == 200, patched.text
    replayed = tenant.request("POST", f"/api/streaming/streams/{stream_id}/quarantine/replay", json={})
    assert replayed.json() == {"replayed": 1, "landed": 1, "still_failing": 0, "errors": []}
    again_replayed = tenant.request("POST", f"/api/streaming/streams/{stream_id}/quarantine/replay", json={})
    assert again_replayed.json()["replayed"] == 0
    assert len(landed()) == 51

    metrics = tenant.request("GET", f"/api/streaming/streams/{stream_id}/metrics").json()
    assert metrics["messages"] == 51 and metrics["records_written"] == 50 and metrics["quarantined"] == 0
    assert metrics["error_rate"] > 0 and metrics["lag_seconds"] is not None
    assert metrics["duplicates_skipped"] == 25, "the client's retries were skipped, and counted"

    paused = tenant.request("POST", f"/api/streaming/streams/{stream_id}/pause")
    assert paused.json()["status"] == "paused"
    assert _ingest(cloud, stream_id, key, events[:1]).status_code == 409
    assert _ingest(cloud, stream_id, "cgi_" + "x" * 43, events[:1]).status_code == 401
    assert tenant.request("DELETE", f"/api/streaming/streams/{stream_id}").status_code == 204
    assert _ingest(cloud, stream_id, key, events[:1]).status_code == 401
    assert tenant.request("GET", f"/api/integrations/{stream_id}").status_code == 404


def test_a_customers_kinesis_stream_lands_once_through_its_mapping(cloud: Any, new_tenant: Any) -> None:
    tenant = new_tenant(f"org_kinesis_{uuid.uuid4().hex[:8]}")
    kinesis = cloud.boto3_client("kinesis")
    name = f"customer-usage-{uuid.uuid4().hex[:6]}"
    kinesis.create_stream(StreamName=name, ShardCount=2)
    arn = kinesis.describe_stream(StreamName=name)["StreamDescription"]["StreamARN"]
    created = tenant.request(
        "POST",
        "/api/streaming/streams",
        json={
            "name": "Usage from Kinesis",
            "stream_type": "kinesis",
            "topics": [arn],
            "batch_size": 50,
            "record_id_field": "id",
            "connection_config": {"starting_position": "TRIM_HORIZON"},
        },
    )
    assert created.status_code == 201, created.text
    stream_id = created.json()["stream_id"]
    lambda_client = cloud.boto3_client("lambda")
    mappings = [
        m for m in lambda_client.list_event_source_mappings()["EventSourceMappings"] if m["EventSourceArn"] == arn
    ]
    assert len(mappings) == 1 and mappings[0]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    for start in range(0, 300, 100):
        kinesis.put_records(
            StreamName=name,
            Records=[
                {"Data": json.dumps({"id": f"u{i}", "type": "usage"}).encode(), "PartitionKey": f"k{i}"}
                for i in range(start, start + 100)
            ],
        )

    def landed() -> list[dict[str, Any]]:
        return _records(cloud, tenant.organization_id, "kinesis")

    wait_until(lambda: len(landed()) >= 300, "300 Kinesis records in the lake")
    assert sorted(r["record_id"] for r in landed()) == sorted(f"u{i}" for i in range(300))

    assert tenant.request("DELETE", f"/api/streaming/streams/{stream_id}").status_code == 204
    remaining = [
        m for m in lambda_client.list_event_source_mappings()["EventSourceMappings"] if m["EventSourceArn"] == arn
    ]
    assert remaining == []


def test_bad_stream_configurations_are_refused_before_anything_is_created(cloud: Any, new_tenant: Any) -> None:
    tenant = new_tenant(f"org_badstream_{uuid.uuid4().hex[:8]}")
    refused = [
        {"name": "a", "stream_type": "websocket", "connection_config": {"url": "wss://169.254.169.254/feed"}},
        {"name": "b", "stream_type": "kinesis", "topics": ["not-an-arn"]},
        {"name": "c", "stream_type": "kinesis", "topics": ["arn:aws:kinesis:us-east-1:123456789012:stream/missing"]},
        {"name": "d", "stream_type": "custom", "topics": ["x"]},
        {
            "name": "e",
            "stream_type": "kafka",
            "topics": ["t", "u"],
            "connection_config": {"bootstrap_servers": ["127.0.0.1:9092"]},
        },
        {
            "name": "f",
            "stream_type": "kafka",
            "topics": ["t"],
            "connection_config": {"bootstrap_servers": ["169.254.169.254:9092"]},
        },
    ]
    for body in refused:
        answer = tenant.request("POST", "/api/streaming/streams", json=body)
        assert answer.status_code == 422, (body, answer.text)
    assert tenant.request("GET", "/api/streaming/streams").json()["items"] == []
    assert tenant.request("GET", "/api/integrations").json()["items"] == []


@pytest.fixture(scope="session")
def kafka_broker() -> str:
    """The local Kafka-protocol broker (tansu), started if `make kafka` has not already."""
    from local.broker import HOST, PORT, ensure_broker

    ensure_broker()
    return f"{HOST}:{PORT}"


def _topic(servers: str, partitions: int) -> str:
    from kafka.admin import KafkaAdminClient, NewTopic

    name = f"usage-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=servers)
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()
    return name


def test_a_kafka_topic_lands_once_through_two_consumers_of_its_mapping(
    cloud: Any, new_tenant: Any, kafka_broker: str
) -> None:
    from kafka import KafkaProducer

    tenant = new_tenant(f"org_kafka_{uuid.uuid4().hex[:8]}")
    topic = _topic(kafka_broker, 4)
    producer = KafkaProducer(bootstrap_servers=kafka_broker)
    for i in range(400):
        producer.send(topic, json.dumps({"id": f"k{i}", "type": "usage"}).encode(), partition=i % 4)
    producer.flush()
    created = tenant.request(
        "POST",
        "/api/streaming/streams",
        json={
            "name": "Usage from Kafka",
            "stream_type": "kafka",
            "topics": [topic],
            "batch_size": 100,
            "record_id_field": "id",
            "connection_config": {"bootstrap_servers": [kafka_broker], "starting_position": "TRIM_HORIZON"},
        },
    )
    assert created.status_code == 201, created.text
    stream_id = created.json()["stream_id"]
    (mapping,) = [
        m
        for m in cloud.boto3_client("lambda").list_event_source_mappings()["EventSourceMappings"]
        if m.get("Topics") == [topic]
    ]
    assert mapping["SelfManagedKafkaEventSourceConfig"] == {"ConsumerGroupId": stream_id}

    def landed() -> list[dict[str, Any]]:
        return _records(cloud, tenant.organization_id, "kafka")

    wait_until(lambda: len(landed()) >= 400, "400 Kafka messages in the lake")
    # More arrive while both consumers of the group run.
    for i in range(400, 600):
        producer.send(topic, json.dumps({"id": f"k{i}", "type": "usage"}).encode(), partition=i % 4)
    producer.flush()
    producer.close()
    wait_until(lambda: len(landed()) >= 600, "600 Kafka messages in the lake")
    assert sorted(r["record_id"] for r in landed()) == sorted(f"k{i}" for i in range(600)), "each message once"

    assert tenant.request("POST", f"/api/streaming/streams/{stream_id}/pause").status_code == 200
    state = cloud.boto3_client("lambda").get_event_source_mapping(UUID=mapping["UUID"])["State"]
    assert state == "Disabled"
    assert tenant.request("DELETE", f"/api/streaming/streams/{stream_id}").status_code == 204
    remaining = cloud.boto3_client("lambda").list_event_source_mappings()["EventSourceMappings"]
    assert all(m.get("Topics") != [topic] for m in remaining)


def test_kafka_credentials_go_to_the_mappings_secret_and_never_into_answers(
    cloud: Any, new_tenant: Any, kafka_broker: str
) -> None:
    tenant = new_tenant(f"org_kafkasasl_{uuid.uuid4().hex[:8]}")
    password = "s3cret-" + uuid.uuid4().hex
    created = tenant.request(
        "POST",
        "/api/streaming/streams",
        json={
            "name": "Secured",
            "stream_type": "kafka",
            "topics": [_topic(kafka_broker, 1)],
            "connection_config": {"bootstrap_servers": [kafka_broker], "security_protocol": "SASL_SCRAM_512"},
            "credentials": {"credential_type": "basic_auth", "username": "churn", "password": password},
        },
    )
    assert created.status_code == 201, created.text
    assert password not in created.text and created.json()["credentials"]["fields_set"]["password"].startswith("*")
    stream_id = created.json()["stream_id"]
    (mapping,) = [
        m
        for m in cloud.boto3_client("lambda").list_event_source_mappings()["EventSourceMappings"]
        if (m.get("SelfManagedKafkaEventSourceConfig") or {}).get("ConsumerGroupId") == stream_id
    ]
    (access,) = mapping["SourceAccessConfigurations"]
    assert access["Type"] == "SASL_SCRAM_512_AUTH"
    secret = json.loads(cloud.boto3_client("secretsmanager").get_secret_value(SecretId=access["URI"])["SecretString"])
    assert secret == {"username": "churn", "password": password}
    for path in ("", "/metrics", "/quarantine"):
        assert password not in tenant.request("GET", f"/api/streaming/streams/{stream_id}{path}").text
    assert tenant.request("DELETE", f"/api/streaming/streams/{stream_id}").status_code == 204
    secrets = cloud.boto3_client("secretsmanager").list_secrets()["SecretList"]
    assert all(not s["Name"].endswith(stream_id) for s in secrets)

    refused = tenant.request(
        "POST",
        "/api/streaming/streams",
        json={
            "name": "No password",
            "stream_type": "kafka",
            "topics": ["t"],
            "connection_config": {"bootstrap_servers": [kafka_broker], "security_protocol": "SASL_SCRAM_256"},
            "credentials": {"credential_type": "api_key", "api_key": "k" * 20},
        },
    )
    assert refused.status_code == 422 and "username and password" in refused.text
    assert [s["name"] for s in tenant.request("GET", "/api/streaming/streams").json()["items"]] == []


def test_a_redis_stream_lands_once_through_its_consumer_workflow(cloud: Any, new_tenant: Any) -> None:
    """Entries a crashed consumer left pending are taken over, one delivered too often waits in
    quarantine, and every other entry lands exactly once; pausing stops the workflow."""
    import redis

    tenant = new_tenant(f"org_redis_{uuid.uuid4().hex[:8]}")
    key = f"usage:{uuid.uuid4().hex[:8]}"
    client = redis.Redis(host="127.0.0.1", port=6379)
    for i in range(300):
        client.xadd(key, {"data": json.dumps({"id": f"r{i}", "type": "usage"})})
    group = f"group-{uuid.uuid4().hex[:6]}"
    client.xgroup_create(key, group, id="0")
    # Another consumer of the group read the first 50 and crashed before acknowledging them; it
    # kept re-reading the first one, which is now past max_deliveries.
    client.xreadgroup(group, "crashed", {key: ">"}, count=50)
    for _ in range(6):
        client.xreadgroup(group, "crashed", {key: "0"}, count=1)
    first_id = client.xrange(key, count=1)[0][0].decode()
    created = tenant.request(
        "POST",
        "/api/streaming/streams",
        json={
            "name": "Usage from Redis",
            "stream_type": "redis_streams",
            "topics": [key],
            "record_id_field": "id",
            "connection_config": {
                "url": "redis://127.0.0.1:6379/0",
                "consumer_group": group,
                "starting_position": "TRIM_HORIZON",
                "claim_idle_seconds": 1,
                "max_deliveries": 5,
            },
        },
    )
    assert created.status_code == 201, created.text
    stream_id = created.json()["stream_id"]

    def landed() -> list[dict[str, Any]]:
        return _records(cloud, tenant.organization_id, "redis_streams")

    wait_until(lambda: len(landed()) >= 299, "299 Redis entries in the lake")
    ids = sorted(r["record_id"] for r in landed())
    assert ids == sorted(f"r{i}" for i in range(1, 300)), "each entry once, the poison one aside"
    quarantined = tenant.request("GET", f"/api/streaming/streams/{stream_id}/quarantine").json()["items"]
    assert [(q["partition"], q["position"]) for q in quarantined] == [(key, first_id)]
    assert "delivered" in quarantined[0]["error"]
    assert client.xpending(key, group)["pending"] == 0, "everything was acknowledged"
    replayed = tenant.request("POST", f"/api/streaming/streams/{stream_id}/quarantine/replay", json={})
    assert replayed.json()["landed"] == 1
    assert sorted(r["record_id"] for r in landed()) == sorted(f"r{i}" for i in range(300))
    wait_until(
        lambda: tenant.request("GET", f"/api/streaming/streams/{stream_id}/metrics").json()["lag_messages"] == 0,
        "the group's lag reported as 0",
        timeout=60,
    )

    sfn = cloud.boto3_client("stepfunctions")
    paused = tenant.request("POST", f"/api/streaming/streams/{stream_id}/pause")
    assert paused.status_code == 200
    machine = cloud.resources["StreamConsumerStateMachine"]["physical_id"]

    def consumers_running() -> int:
        executions = sfn.list_executions(stateMachineArn=machine)["executions"]
        return sum(1 for e in executions if e["name"].startswith(stream_id) and e["status"] == "RUNNING")

    wait_until(lambda: consumers_running() == 0, "the paused stream's workflow to end", timeout=60)
    client.xadd(key, {"data": json.dumps({"id": "after-resume", "type": "usage"})})
    assert tenant.request("POST", f"/api/streaming/streams/{stream_id}/resume").status_code == 200
    wait_until(lambda: any(r["record_id"] == "after-resume" for r in landed()), "the entry added while paused")
    assert tenant.request("DELETE", f"/api/streaming/streams/{stream_id}").status_code == 204
    client.delete(key)


def test_a_redis_stream_that_does_not_answer_is_refused(cloud: Any, new_tenant: Any) -> None:
    tenant = new_tenant(f"org_redisbad_{uuid.uuid4().hex[:8]}")
    answer = tenant.request(
        "POST",
        "/api/streaming/streams",
        json={
            "name": "Nowhere",
            "stream_type": "redis_streams",
            "topics": ["k"],
            "connection_config": {"url": "redis://127.0.0.1:1/0"},
        },
    )
    assert answer.status_code == 422 and "did not answer" in answer.text
    assert tenant.request("GET", "/api/streaming/streams").json()["items"] == []


class Feed:
    """A sequenced WebSocket feed on 127.0.0.1: it wants a token header and a subscribe message,
    drops every connection after 60 events, replays a few already-sent events after a resume,
    and never sends event 150 (a gap the consumer must report)."""

    TOTAL = 200
    MISSING = 150
    TOKEN = "feed-token-" + uuid.uuid4().hex

    def __init__(self) -> None:
        from websockets.sync.server import serve

        self.connections = 0
        self.resumes: list[int] = []
        self.server = serve(self._handle, "127.0.0.1", 0, process_request=self._check)
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _check(self, connection: Any, request: Any) -> Any:
        if request.headers.get("X-Feed-Token") != self.TOKEN:
            return connection.respond(401, "bad token\n")
        return None

    def _handle(self, socket: Any) -> None:
        self.connections += 1
        subscribe = json.loads(socket.recv(timeout=10))
        assert subscribe == {"op": "subscribe", "channel": "usage"}
        start = 1
        try:
            resume = json.loads(socket.recv(timeout=0.5))
            self.resumes.append(int(resume["after"]))
            start = max(1, int(resume["after"]) - 4)  # a replay that overlaps what landed
        except TimeoutError:
            pass
        sent = 0
        for seq in range(start, self.TOTAL + 1):
            if seq == self.MISSING:
                continue
            socket.send(json.dumps({"seq": seq, "event_id": f"w{seq}", "type": "usage"}))
            sent += 1
            if sent == 60:
                return  # drops the connection mid-stream
        time.sleep(30)  # stays open, quiet, until the consumer's turn ends

    def close(self) -> None:
        self.server.shutdown()


def test_a_websocket_feed_lands_once_across_drops_and_replays_and_reports_its_gap(cloud: Any, new_tenant: Any) -> None:
    feed = Feed()
    tenant = new_tenant(f"org_ws_{uuid.uuid4().hex[:8]}")
    try:
        refused = tenant.request(
            "POST",
            "/api/streaming/streams",
            json={
                "name": "No token",
                "stream_type": "websocket",
                "connection_config": {"url": f"ws://127.0.0.1:{feed.port}/feed"},
            },
        )
        assert refused.status_code == 422 and "HTTP 401" in refused.text
        created = tenant.request(
            "POST",
            "/api/streaming/streams",
            json={
                "name": "Usage feed",
                "stream_type": "websocket",
                "event_id_field": "event_id",
                "record_id_field": "event_id",
                "connection_config": {
                    "url": f"ws://127.0.0.1:{feed.port}/feed",
                    "subscribe_messages": [{"op": "subscribe", "channel": "usage"}],
                    "resume_message": {"op": "resume", "after": "{last_sequence}"},
                    "sequence_field": "seq",
                },
                "credentials": {"credential_type": "custom", "custom_fields": {"header.X-Feed-Token": feed.TOKEN}},
            },
        )
        assert created.status_code == 201, created.text
        assert feed.TOKEN not in created.text
        stream_id = created.json()["stream_id"]

        def landed() -> list[dict[str, Any]]:
            return _records(cloud, tenant.organization_id, "websocket")

        wait_until(lambda: len(landed()) >= Feed.TOTAL - 1, "the feed's events in the lake")
        expected = sorted(f"w{i}" for i in range(1, Feed.TOTAL + 1) if i != Feed.MISSING)
        assert sorted(r["record_id"] for r in landed()) == expected, "each event once across drops and replays"
        assert feed.connections >= 4 and feed.resumes, "the feed dropped the consumer, which resumed"
        metrics = tenant.request("GET", f"/api/streaming/streams/{stream_id}/metrics").json()
        assert metrics["sequence_gaps"] == 1, "the event the feed never sent is reported, not skipped silently"
        cloud.invoke("AlertsFunction", {})
        alerts = tenant.request("GET", "/api/dashboard/alerts").json()["items"]
        assert [(a["rule"], a["subject"]) for a in alerts] == [("stream_problems", stream_id)]
        assert "1 sequence number(s) missing from the feed" in alerts[0]["message"]
        assert tenant.request("DELETE", f"/api/streaming/streams/{stream_id}").status_code == 204
    finally:
        feed.close()
