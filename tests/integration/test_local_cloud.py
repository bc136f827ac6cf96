"""The local cloud end to end on its own fixture template: moto resources, in-process Lambdas,
the HTTP gateway with authorizers, Step Functions, SQS and Kinesis pollers, and schedules.

One cloud serves the module; background work is awaited with bounded polls, never fixed sleeps.
"""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from botocore.exceptions import ClientError

from local.cloud import LocalCloud
from local.errors import LambdaInvocationError
from local.testing import ManualClock, wait_for

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_cloud" / "template.yaml"
STACK = "lc-test"


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def cloud(clock: ManualClock) -> Iterator[LocalCloud]:
    with LocalCloud(FIXTURE, ports={"Api": 0, "OpenApi": 0}, stack_name=STACK, clock=clock, poll_interval=0.1) as cloud:
        yield cloud


def physical(cloud: LocalCloud, logical_id: str) -> str:
    return cloud.physical_id(logical_id)


def arn(cloud: LocalCloud, logical_id: str) -> str:
    return str(cloud.resources[logical_id]["arn"])


def stored(cloud: LocalCloud, pk: str, sk: str) -> dict[str, Any] | None:
    item = cloud.boto3_client("dynamodb").get_item(
        TableName=physical(cloud, "RecordsTable"), Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True
    )
    return item.get("Item")


def api(cloud: LocalCloud, path: str, method: str = "GET", **kwargs: Any) -> requests.Response:
    return requests.request(method, cloud.api_urls["Api"] + path, timeout=30, **kwargs)


def echoed(response: requests.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# ---------------------------------------------------------------- resources


def test_every_template_resource_is_recorded_except_those_a_condition_leaves_out(cloud: LocalCloud) -> None:
    assert "ProdOnlyTopic" not in cloud.resources
    assert cloud.resources["RecordsTable"]["type"] == "AWS::DynamoDB::Table"
    assert cloud.resources["Api"]["type"] == "AWS::Serverless::HttpApi"
    assert cloud.resources["HelpersLayer"]["arn"].endswith(f":layer:{STACK}-helpers:1")
    assert set(cloud.api_urls) == {"Api", "OpenApi"}
    bucket = physical(cloud, "LakeBucket")
    assert bucket.startswith(f"{STACK}-lakebucket-")
    assert bucket == bucket.lower()
    assert len(bucket.rsplit("-", 1)[1]) == 8


def test_dynamodb_tables_have_their_keys_indexes_ttl_and_stream(cloud: LocalCloud) -> None:
    dynamodb = cloud.boto3_client("dynamodb")
    table = dynamodb.describe_table(TableName=physical(cloud, "RecordsTable"))["Table"]
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["gsi1"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    ttl = dynamodb.describe_time_to_live(TableName=physical(cloud, "RecordsTable"))["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    named = dynamodb.describe_table(TableName=f"{STACK}-named")["Table"]
    assert named["ProvisionedThroughput"]["ReadCapacityUnits"] == 2


def test_queues_have_redrive_and_fifo_settings(cloud: LocalCloud) -> None:
    sqs = cloud.boto3_client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=physical(cloud, "WorkQueue"), AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "1"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": arn(cloud, "DeadLetterQueue"),
        "maxReceiveCount": 2,
    }
    assert attributes["QueueArn"] == arn(cloud, "WorkQueue")
    fifo = sqs.get_queue_attributes(QueueUrl=physical(cloud, "OrderedQueue"), AttributeNames=["All"])["Attributes"]
    assert fifo["FifoQueue"] == "true"
    assert physical(cloud, "OrderedQueue").endswith(".fifo")


def test_key_alias_and_encrypted_versioned_private_bucket(cloud: LocalCloud) -> None:
    kms = cloud.boto3_client("kms")
    key_id = physical(cloud, "DataKey")
    assert kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"] == arn(cloud, "DataKey")
    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases[f"alias/{STACK}-data"] == key_id
    s3 = cloud.boto3_client("s3")
    bucket = physical(cloud, "LakeBucket")
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": arn(cloud, "DataKey"),
    }
    assert rule["BucketKeyEnabled"] is True
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values())


def test_topic_stream_log_group_alarm_schedule_group_state_machine_and_functions(cloud: LocalCloud) -> None:
    topic = cloud.boto3_client("sns").get_topic_attributes(TopicArn=physical(cloud, "AlertTopic"))["Attributes"]
    assert topic["DisplayName"] == "Fixture test alerts"
    stream = cloud.boto3_client("kinesis").describe_stream_summary(StreamName=physical(cloud, "EventStream"))
    assert stream["StreamDescriptionSummary"]["OpenShardCount"] == 1
    echo = physical(cloud, "EchoFunction")
    (group,) = cloud.boto3_client("logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{echo}")["logGroups"]
    assert group["retentionInDays"] == 7
    (alarm,) = cloud.boto3_client("cloudwatch").describe_alarms(AlarmNames=[f"{STACK}-queue-depth"])["MetricAlarms"]
    assert alarm["AlarmActions"] == [physical(cloud, "AlertTopic")]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": physical(cloud, "WorkQueue").rsplit("/", 1)[1]}]
    group_name = cloud.boto3_client("scheduler").get_schedule_group(Name=f"{STACK}-jobs")["Name"]
    assert group_name == f"{STACK}-jobs"
    machine = cloud.boto3_client("stepfunctions").describe_state_machine(stateMachineArn=physical(cloud, "Workflow"))
    assert arn(cloud, "WorkerFunction") in machine["definition"]
    function = cloud.boto3_client("lambda").get_function(FunctionName=physical(cloud, "EnvBFunction"))
    assert function["Configuration"]["Environment"]["Variables"]["ONLY_B"] == "test-b"


# ---------------------------------------------------------------- Lambda runtime


def test_refs_and_attributes_reach_the_function_environment(cloud: LocalCloud) -> None:
    env = cloud.function_environment("EnvBFunction")
    assert env["QUEUE_URL"] == physical(cloud, "WorkQueue")
    assert env["QUEUE_ARN"] == arn(cloud, "WorkQueue")
    assert env["KEY_ARN"] == arn(cloud, "DataKey")
    assert env["SECOND_TAG"] == "beta"
    assert env["ONLY_B"] == "test-b"
    assert env["API_ENDPOINT"] == cloud.api_urls["Api"]
    assert env["STATE_MACHINE_ARN"] == physical(cloud, "Workflow")
    assert env["RECORDS_TABLE"] == physical(cloud, "RecordsTable")
    assert env["AWS_ENDPOINT_URL"] == cloud.aws_endpoint_url


def test_functions_see_only_their_own_environment(cloud: LocalCloud) -> None:
    a = cloud.invoke("EnvAFunction", {})
    b = cloud.invoke("EnvBFunction", {})
    assert (a["environ"]["ONLY_A"], a["environ"]["SHARED"], "ONLY_B" in a["environ"]) == ("a", "from-a", False)
    assert (b["environ"]["ONLY_B"], b["environ"]["SHARED"], "ONLY_A" in b["environ"]) == (
        "test-b",
        "from-globals",
        False,
    )
    assert a["environ"]["AWS_LAMBDA_FUNCTION_NAME"] == physical(cloud, "EnvAFunction")
    assert (a["memory"], b["memory"]) == (128, 256)
    assert a["module"] != b["module"]
    assert b["function_name"] == f"{STACK}-env-b"


def test_a_handler_can_invoke_another_function_through_moto(cloud: LocalCloud) -> None:
    result = cloud.invoke("EnvAFunction", {"invoke": physical(cloud, "EnvBFunction")})
    inner = result["inner"]
    assert inner["function_name"] == f"{STACK}-env-b"
    assert inner["environ"]["ONLY_B"] == "test-b"
    assert "ONLY_A" not in inner["environ"]
    assert result["environ_after_inner"]["ONLY_A"] == "a"


def test_invoke_raises_on_handler_error_and_lambda_api_reports_it(cloud: LocalCloud) -> None:
    with pytest.raises(LambdaInvocationError) as raised:
        cloud.invoke("WorkerFunction", {"fail": True})
    assert raised.value.payload["errorType"] == "ValueError"
    client = cloud.boto3_client("lambda")
    ok = client.invoke(FunctionName=physical(cloud, "WorkerFunction"), Payload=json.dumps({"value": 2}))
    assert json.loads(ok["Payload"].read())["value"] == 4
    failed = client.invoke(FunctionName=physical(cloud, "WorkerFunction"), Payload=json.dumps({"fail": True}))
    assert "FunctionError" in failed
    assert json.loads(failed["Payload"].read())["errorMessage"] == "asked to fail"


def test_state_machine_runs_lambda_tasks_in_process(cloud: LocalCloud) -> None:
    stepfunctions = cloud.boto3_client("stepfunctions")

    def finished(execution_arn: str) -> dict[str, Any] | None:
        description: dict[str, Any] = stepfunctions.describe_execution(executionArn=execution_arn)
        return None if description["status"] == "RUNNING" else description

    workflow = physical(cloud, "Workflow")
    run = stepfunctions.start_execution(stateMachineArn=workflow, input=json.dumps({"value": 3}))
    done = wait_for(lambda: finished(run["executionArn"]), what="the execution to finish")
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"]) == {"value": 12, "table": physical(cloud, "RecordsTable")}
    caught = stepfunctions.start_execution(stateMachineArn=workflow, input=json.dumps({"fail": True}))
    done = wait_for(lambda: finished(caught["executionArn"]), what="the failing execution to finish")
    assert done["status"] == "SUCCEEDED", done
    assert json.loads(done["output"]) == {"recovered": "ValueError"}


# ---------------------------------------------------------------- HTTP gateway


def test_routes_path_parameters_and_most_specific_match(cloud: LocalCloud) -> None:
    key = {"X-Api-Key": "good"}
    event = echoed(api(cloud, "/items/42?tag=a&tag=b", headers=key))["event"]
    assert (event["routeKey"], event["pathParameters"]) == ("GET /items/{item_id}", {"item_id": "42"})
    assert event["queryStringParameters"] == {"tag": "a,b"}
    assert echoed(api(cloud, "/items/special", headers=key))["event"]["routeKey"] == "GET /items/special"
    assert echoed(api(cloud, "/items/9", "DELETE", headers=key))["event"]["routeKey"] == "ANY /items/{item_id}"
    files = echoed(api(cloud, "/files/a/b/c.txt", headers=key))["event"]
    assert (files["routeKey"], files["pathParameters"]) == ("GET /files/{proxy+}", {"proxy": "a/b/c.txt"})


def test_payload_v2_event_and_function_context(cloud: LocalCloud) -> None:
    body = echoed(api(cloud, "/items/1", headers={"X-Api-Key": "good", "Cookie": "a=1; b=2", "X-Twice": "x"}))
    event = body["event"]
    assert event["version"] == "2.0"
    assert event["cookies"] == ["a=1", "b=2"]
    assert event["headers"]["x-api-key"] == "good"
    assert event["headers"]["x-twice"] == "x"
    context = event["requestContext"]
    assert context["apiId"] == physical(cloud, "Api")
    assert context["accountId"] == "123456789012"
    assert context["http"]["method"] == "GET"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert context["stage"] == "$default"
    assert body["greeting"] == "hello-test"
    assert body["layer"] == "from-layer"
    assert body["function_name"] == physical(cloud, "EchoFunction")
    assert body["remaining_ms"] > 0


def test_simple_authorizer_outcomes_and_context(cloud: LocalCloud) -> None:
    assert api(cloud, "/items/1").status_code == 401
    assert api(cloud, "/items/1").json() == {"message": "Unauthorized"}
    denied = api(cloud, "/items/1", headers={"X-Api-Key": "wrong"})
    assert (denied.status_code, denied.json()) == (403, {"message": "Forbidden"})
    failed = api(cloud, "/items/1", headers={"X-Api-Key": "boom"})
    assert (failed.status_code, failed.json()) == (500, {"message": "Internal Server Error"})
    first = echoed(api(cloud, "/items/1", headers={"X-Api-Key": "good-2"}))["event"]["requestContext"]["authorizer"]
    assert first["lambda"]["user"] == "user-for-good-2"
    assert first["lambda"]["identity"] == ["good-2"]
    assert first["lambda"]["type"] == "REQUEST"
    again = echoed(api(cloud, "/items/2", headers={"X-Api-Key": "good-2"}))["event"]["requestContext"]["authorizer"]
    assert again == first, "a cached authorizer result is reused for the same identity"


def test_routes_with_auth_none_and_unknown_paths(cloud: LocalCloud) -> None:
    public = echoed(api(cloud, "/public"))["event"]
    assert "authorizer" not in public["requestContext"]
    missing = api(cloud, "/nowhere")
    assert (missing.status_code, missing.json()) == (404, {"message": "Not Found"})


def test_iam_policy_authorizer_without_caching(cloud: LocalCloud) -> None:
    assert api(cloud, "/policy/open").status_code == 200
    assert api(cloud, "/policy/secret").status_code == 403
    allowed = echoed(api(cloud, "/policy/secret", headers={"Authorization": "allow"}))["event"]
    assert allowed["requestContext"]["authorizer"]["principalId"] == "allow"
    assert "calls" in allowed["requestContext"]["authorizer"]["lambda"]


def test_binary_bodies_and_response_mapping(cloud: LocalCloud) -> None:
    payload = bytes(range(256))
    upload = api(
        cloud,
        "/upload",
        "POST",
        data=payload,
        headers={"X-Api-Key": "good", "Content-Type": "application/octet-stream"},
    )
    event = echoed(upload)["event"]
    assert event["isBase64Encoded"] is True
    assert base64.b64decode(event["body"]) == payload
    text = echoed(api(cloud, "/upload", "POST", json={"a": 1}, headers={"X-Api-Key": "good"}))["event"]
    assert (text["isBase64Encoded"], json.loads(text["body"])) == (False, {"a": 1})
    plain = api(cloud, "/plain")
    assert (plain.status_code, plain.headers["Content-Type"], plain.json()) == (200, "application/json", ["plain", 1])
    custom = api(cloud, "/custom")
    assert custom.status_code == 201
    assert custom.headers["x-custom"] == "yes"
    assert custom.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2; Path=/"]
    assert custom.content == b"\x00\x01binary"
    boom = api(cloud, "/boom")
    assert (boom.status_code, boom.json()) == (500, {"message": "Internal Server Error"})


def test_default_route_on_a_second_api(cloud: LocalCloud) -> None:
    response = requests.put(cloud.api_urls["OpenApi"] + "/any/where?x=1", data="hi", timeout=30)
    event = echoed(response)["event"]
    assert (event["routeKey"], event["rawPath"], event["body"]) == ("$default", "/any/where", "hi")


def test_request_body_over_10_mb_is_refused(cloud: LocalCloud) -> None:
    host, port = cloud.api_urls["Api"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nX-Api-Key: good\r\nContent-Length: 10485761\r\n\r\n")
        reply = connection.makefile("rb").read()
    status_line, _, rest = reply.partition(b"\r\n")
    assert b" 413 " in status_line
    assert rest.endswith(b'{"message": "Request Entity Too Large"}')


# ---------------------------------------------------------------- event sources


def test_sqs_batches_with_partial_failures_and_poison_to_the_dlq(cloud: LocalCloud) -> None:
    sqs = cloud.boto3_client("sqs")
    queue = physical(cloud, "WorkQueue")
    attributes = {"origin": {"DataType": "String", "StringValue": "tests"}}
    for body in ("good-1", "poison-1", "good-2", "good-3"):
        sqs.send_message(QueueUrl=queue, MessageBody=body, MessageAttributes=attributes)
    for body in ("good-1", "good-2", "good-3"):
        wait_for(lambda body=body: stored(cloud, "sqs", body), what=f"{body} to be processed")
    record = json.loads(stored(cloud, "sqs", "good-1")["payload"]["S"])  # type: ignore[index]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == arn(cloud, "WorkQueue")
    assert record["awsRegion"] == "us-east-1"
    assert record["body"] == "good-1"
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["messageAttributes"]["origin"]["stringValue"] == "tests"
    assert record["md5OfBody"]
    assert record["receiptHandle"]

    def dead_letters() -> list[str]:
        received = sqs.receive_message(QueueUrl=physical(cloud, "DeadLetterQueue"), MaxNumberOfMessages=10)
        return [message["Body"] for message in received.get("Messages", [])]

    assert wait_for(dead_letters, what="the poison message in the DLQ") == ["poison-1"]
    assert stored(cloud, "sqs", "poison-1") is None


def test_kinesis_records_are_delivered_and_retried_from_the_failed_record(cloud: LocalCloud) -> None:
    cloud.boto3_client("kinesis").put_records(
        StreamName=physical(cloud, "EventStream"),
        Records=[{"Data": data.encode(), "PartitionKey": "p"} for data in ("k-1", "fail-once-k", "k-3")],
    )

    def deliveries(data: str) -> int:
        item = stored(cloud, "kinesis", data)
        return int(item["deliveries"]["N"]) if item else 0

    wait_for(lambda: deliveries("k-3"), what="the record after the failed one")
    assert (deliveries("k-1"), deliveries("fail-once-k"), deliveries("k-3")) == (1, 2, 1)
    record = json.loads(stored(cloud, "kinesis", "k-1")["payload"]["S"])  # type: ignore[index]
    assert record["eventSource"] == "aws:kinesis"
    assert record["eventSourceARN"] == arn(cloud, "EventStream")
    assert base64.b64decode(record["kinesis"]["data"]) == b"k-1"
    assert record["eventID"].startswith("shardId-")


# ---------------------------------------------------------------- schedules


def test_rate_schedule_created_at_runtime_fires_on_the_injected_clock(cloud: LocalCloud, clock: ManualClock) -> None:
    scheduler = cloud.boto3_client("scheduler")
    scheduler.create_schedule(
        Name="every-minute",
        ScheduleExpression="rate(1 minute)",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": arn(cloud, "ScheduledFunction"),
            "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
            "Input": json.dumps({"job": "rate-job"}),
        },
    )
    created = scheduler.get_schedule(Name="every-minute")["CreationDate"]
    assert stored(cloud, "scheduled", "rate-job") is None
    clock.advance_to(created + timedelta(seconds=61))
    wait_for(lambda: stored(cloud, "scheduled", "rate-job"), what="the rate schedule to fire")


def test_one_time_schedule_fires_and_deletes_itself(cloud: LocalCloud, clock: ManualClock) -> None:
    scheduler = cloud.boto3_client("scheduler")
    when = clock() + timedelta(minutes=5)
    scheduler.create_schedule(
        Name="once",
        GroupName=f"{STACK}-jobs",
        ScheduleExpression=f"at({when:%Y-%m-%dT%H:%M:%S})",
        FlexibleTimeWindow={"Mode": "OFF"},
        ActionAfterCompletion="DELETE",
        Target={
            "Arn": arn(cloud, "ScheduledFunction"),
            "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
            "Input": json.dumps({"job": "at-job"}),
        },
    )
    clock.advance_to(when + timedelta(seconds=1))
    wait_for(lambda: stored(cloud, "scheduled", "at-job"), what="the one-time schedule to fire")

    def deleted() -> bool:
        try:
            scheduler.get_schedule(Name="once", GroupName=f"{STACK}-jobs")
        except ClientError as error:
            return error.response["Error"]["Code"] == "ResourceNotFoundException"
        return False

    wait_for(deleted, what="the completed schedule to be deleted")


def test_template_cron_schedule_event_fires(cloud: LocalCloud, clock: ManualClock) -> None:
    now = clock()
    next_three = now.replace(hour=3, minute=0, second=0, microsecond=0)
    if next_three <= now:
        next_three += timedelta(days=1)
    clock.advance_to(next_three + timedelta(seconds=30))
    item = wait_for(lambda: stored(cloud, "scheduled", "nightly"), what="the nightly cron to fire")
    assert json.loads(item["payload"]["S"]) == {"job": "nightly"}


def test_schedule_can_start_a_state_machine(cloud: LocalCloud, clock: ManualClock) -> None:
    stepfunctions = cloud.boto3_client("stepfunctions")
    when = clock() + timedelta(minutes=1)
    cloud.boto3_client("scheduler").create_schedule(
        Name="start-workflow",
        ScheduleExpression=f"at({when:%Y-%m-%dT%H:%M:%S})",
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={
            "Arn": physical(cloud, "Workflow"),
            "RoleArn": "arn:aws:iam::123456789012:role/scheduler",
            "Input": json.dumps({"value": 50}),
        },
    )
    clock.advance_to(when + timedelta(seconds=1))

    def succeeded_with_200() -> bool:
        executions = stepfunctions.list_executions(stateMachineArn=physical(cloud, "Workflow"))["executions"]
        for execution in executions:
            description = stepfunctions.describe_execution(executionArn=execution["executionArn"])
            if description["status"] == "SUCCEEDED" and json.loads(description["output"]).get("value") == 200:
                return True
        return False

    wait_for(succeeded_with_200, what="the scheduled execution to succeed")
