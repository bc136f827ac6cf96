"""template.yaml against the code it deploys: handlers, environment, routes, and guard rails.

Reads the template and the code statically: nothing is deployed and no handler code is imported.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from local.template import load_yaml
from tests.support.handlers import REPO
from tests.support.source_scan import Program, declared_routes, defines_callable, load_program, parse, program_env_reads

# The local cloud's loader: it reads short-form intrinsics (!Ref, !GetAtt) as their long form.
TEMPLATE = load_yaml(REPO / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]
FUNCTIONS = {name: r for name, r in RESOURCES.items() if r["Type"] == "AWS::Serverless::Function"}
GLOBAL_ENV: dict[str, Any] = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]

# Set by the Lambda runtime itself, never by the template.
# https://docs.aws.amazon.com/lambda/latest/dg/configuration-envvars.html#configuration-envvars-runtime
LAMBDA_PROVIDED_ENV = frozenset(
    {
        "_HANDLER",
        "_X_AMZN_TRACE_ID",
        "AWS_ACCESS_KEY_ID",
        "AWS_DEFAULT_REGION",
        "AWS_EXECUTION_ENV",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
        "AWS_LAMBDA_FUNCTION_NAME",
        "AWS_LAMBDA_FUNCTION_VERSION",
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        "AWS_LAMBDA_LOG_FORMAT",
        "AWS_LAMBDA_LOG_GROUP_NAME",
        "AWS_LAMBDA_LOG_LEVEL",
        "AWS_LAMBDA_LOG_STREAM_NAME",
        "AWS_LAMBDA_RUNTIME_API",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_XRAY_CONTEXT_MISSING",
        "AWS_XRAY_DAEMON_ADDRESS",
        "LAMBDA_RUNTIME_DIR",
        "LAMBDA_TASK_ROOT",
        "LANG",
        "LD_LIBRARY_PATH",
        "PATH",
        "PYTHONPATH",
        "TZ",
    }
)

# Parameter -> the environment variable that carries it into every function.
PARAMETER_ENV = {
    "Environment": "ENVIRONMENT",
    "LogLevel": "POWERTOOLS_LOG_LEVEL",
    "IntegrationDefaultRetryAttempts": "INTEGRATION_DEFAULT_RETRY_ATTEMPTS",
    "IntegrationDefaultBatchSize": "INTEGRATION_DEFAULT_BATCH_SIZE",
    "WebhookRateLimitPerMinute": "WEBHOOK_RATE_LIMIT_PER_MINUTE",
    "WebhookUnverifiedPerSourcePerMinute": "WEBHOOK_UNVERIFIED_PER_SOURCE_PER_MINUTE",
    "WebhookUnverifiedPerEndpointPerMinute": "WEBHOOK_UNVERIFIED_PER_ENDPOINT_PER_MINUTE",
    "WebhookMaxPayloadSize": "WEBHOOK_MAX_PAYLOAD_SIZE",
    "WebhookSignatureValidation": "WEBHOOK_SIGNATURE_VALIDATION",
    "ApiRateLimitingEnabled": "API_RATE_LIMITING_ENABLED",
    "DashboardUpdateInterval": "DASHBOARD_UPDATE_INTERVAL",
    "ManagementMaxBodyBytes": "MANAGEMENT_MAX_BODY_BYTES",
    "MaxConcurrentSyncsPerOrganization": "MAX_CONCURRENT_SYNCS_PER_ORGANIZATION",
    "AllowPrivateNetworkSources": "ALLOW_PRIVATE_NETWORK_SOURCES",
}
# Parameters only the functions that sync need: the optional Analytics API sink.
SYNC_PARAMETER_ENV = {
    "AnalyticsApiUrl": "ANALYTICS_API_URL",
    "AnalyticsApiTokenSecretName": "ANALYTICS_API_TOKEN_SECRET",
}
# The functions that write records to the sinks (syncs and webhook events alike).
SYNCING_FUNCTIONS = ("ManagementFunction", "SyncTaskFunction", "EventProcessorFunction")
# Parameters only the webhook event processor reads.
WEBHOOK_PARAMETER_ENV = {"WebhookMaxReceiveCount": "WEBHOOK_MAX_RECEIVE_COUNT"}
# Parameters only the continuous consumer reads: the change-log guardian's alert thresholds.
GUARDIAN_PARAMETER_ENV = {
    "ChangeLogAlertHoursLeft": "CDC_ALERT_HOURS_LEFT",
    "ChangeLogAlertRetainedGiB": "CDC_ALERT_RETAINED_GB",
}
# Parameters that shape infrastructure only; no code reads them.
INFRASTRUCTURE_PARAMETERS = frozenset(
    {
        "ApiThrottlingRateLimit",
        "ApiThrottlingBurstLimit",
        "AlarmEmail",
        "LogRetentionDays",
        "WebhookQueueVisibilityTimeout",
        "IngestStreamShards",
        "KinesisSourceStreamArns",
        "KafkaSubnetIds",
        "StreamConsumerTurnSeconds",
        "KafkaSecurityGroupIds",
    }
)
WEBHOOK_ROUTES = {
    ("POST", "/webhooks/{provider}/{organization_id}"),
    ("GET", "/webhooks/{provider}/{organization_id}"),
    ("GET", "/webhooks/health"),
}

# The routes anyone may call: the API's documentation and readiness, which names no organisation.
# The docs, readiness, and the dashboard page with its assets (no data; the page asks for a key).
PUBLIC_ROUTES = {
    ("GET", "/api/docs"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/dashboard/health"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/assets/{name}"),
}

REQUIRED_OUTPUTS = {
    "ManagementApiUrl",
    "DataTableName",
    "DataTableArn",
    "CredentialsKeyArn",
    "CredentialsKeyAliasName",
    "DataLakeBucketName",
    "AlertTopicArn",
    "ManagementFunctionName",
    "AuthorizerFunctionName",
    "OperationsDashboardName",
}


def code_dir(function: dict[str, Any]) -> Path:
    return REPO / str(function["Properties"]["CodeUri"])


def handler_parts(function: dict[str, Any]) -> tuple[str, str]:
    module, _, attribute = function["Properties"]["Handler"].rpartition(".")
    return module, attribute


def program_of(name: str) -> Program:
    function = FUNCTIONS[name]
    module, _ = handler_parts(function)
    return load_program(code_dir(function), module)


def function_env(name: str) -> dict[str, Any]:
    own = FUNCTIONS[name]["Properties"].get("Environment", {}).get("Variables", {})
    return {**GLOBAL_ENV, **own}


def management_events() -> dict[str, dict[str, Any]]:
    events = FUNCTIONS["ManagementFunction"]["Properties"]["Events"]
    return {name: e["Properties"] for name, e in events.items() if e["Type"] == "HttpApi"}


def template_routes() -> dict[tuple[str, str], dict[str, Any]]:
    """The routes the template declares, without the $default fallback (which the code answers
    with 405 or 404, not with a route of its own)."""
    return {(e["Method"].upper(), e["Path"]): e for e in management_events().values() if e["Path"] != "$default"}


def test_unrouted_requests_reach_the_management_function() -> None:
    fallbacks = [e for e in management_events().values() if e["Path"] == "$default"]
    assert fallbacks == [{"ApiId": {"Ref": "ManagementApi"}, "Path": "$default", "Method": "ANY"}]


def path_shape(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


def path_params(path: str) -> list[str]:
    return re.findall(r"\{([^}]+)\}", path)


# ---------------------------------------------------------------- handlers


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_code_uri_exists(name: str) -> None:
    assert code_dir(FUNCTIONS[name]).is_dir(), f"{name}: CodeUri {FUNCTIONS[name]['Properties']['CodeUri']} is missing"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_handler_resolves_to_a_callable(name: str) -> None:
    module, attribute = handler_parts(FUNCTIONS[name])
    path = code_dir(FUNCTIONS[name]) / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{name}: handler module {path.relative_to(REPO)} is missing"
    assert defines_callable(parse(path), attribute), f"{name}: {path.relative_to(REPO)} does not define {attribute}"


# ---------------------------------------------------------------- environment


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_variable_the_code_reads_is_set(name: str) -> None:
    reads = program_env_reads(program_of(name))
    missing = {v: sorted(m) for v, m in reads.items() if v not in function_env(name) and v not in LAMBDA_PROVIDED_ENV}
    assert not missing, f"{name} reads variables the template does not set: {missing}"


def test_every_parameter_is_accounted_for() -> None:
    assert set(TEMPLATE["Parameters"]) == (
        set(PARAMETER_ENV)
        | set(SYNC_PARAMETER_ENV)
        | set(WEBHOOK_PARAMETER_ENV)
        | set(GUARDIAN_PARAMETER_ENV)
        | INFRASTRUCTURE_PARAMETERS
    )


def test_the_guardian_alerts_at_the_stacks_thresholds_and_runs_whether_or_not_a_consumer_does() -> None:
    env = function_env("StreamConsumerFunction")
    for parameter, variable in GUARDIAN_PARAMETER_ENV.items():
        assert env[variable] == {"Ref": parameter}
    schedule = RESOURCES["StreamConsumerFunction"]["Properties"]["Events"]["ChangeLogGuardian"]
    assert schedule["Type"] == "Schedule" and json.loads(schedule["Properties"]["Input"]) == {"action": "cdc_guardian"}


def test_the_event_processor_knows_when_a_message_is_dead() -> None:
    """It records a dead letter on the attempt the queue's redrive policy makes the last one."""
    env = function_env("EventProcessorFunction")
    assert env["WEBHOOK_MAX_RECEIVE_COUNT"] == {"Ref": "WebhookMaxReceiveCount"}
    redrive = RESOURCES["WebhookQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["maxReceiveCount"] == {"Ref": "WebhookMaxReceiveCount"}
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["WebhookDeadLetterQueue", "Arn"]}


@pytest.mark.parametrize("name", SYNCING_FUNCTIONS)
def test_sync_parameters_reach_the_functions_that_sync(name: str) -> None:
    env = function_env(name)
    wrong = {p: env.get(v) for p, v in SYNC_PARAMETER_ENV.items() if env.get(v) != {"Ref": p}}
    assert not wrong, f"{name}: these parameters do not reach its environment as expected: {wrong}"


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_parameter_reaches_the_function(name: str) -> None:
    env = function_env(name)
    wrong = {p: env.get(v) for p, v in PARAMETER_ENV.items() if env.get(v) != {"Ref": p}}
    assert not wrong, f"{name}: these parameters do not reach its environment as expected: {wrong}"


def test_functions_find_the_table() -> None:
    assert GLOBAL_ENV["TABLE_NAME"] == {"Ref": "DataTable"}


# ---------------------------------------------------------------- routes


def test_routes_match_the_code() -> None:
    in_code = declared_routes(program_of("ManagementFunction"))
    in_template = set(template_routes())
    assert in_code - in_template == set(), "routes the code declares but the template does not"
    assert in_template - in_code == set(), "routes the template declares but the code does not"


def test_path_parameter_names_match_the_code() -> None:
    in_code = {(m, path_shape(p)): path_params(p) for m, p in declared_routes(program_of("ManagementFunction"))}
    for method, path in template_routes():
        key = (method, path_shape(path))
        if key in in_code:
            assert path_params(path) == in_code[key], f"{method} {path}: code names {in_code[key]}"


def test_management_routes_are_on_the_management_api() -> None:
    for name, event in management_events().items():
        assert event["ApiId"] == {"Ref": "ManagementApi"}, name


def test_webhook_routes_are_public_and_only_on_the_webhook_api() -> None:
    events = FUNCTIONS["WebhookReceiverFunction"]["Properties"]["Events"]
    routes = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events.values() if e["Type"] == "HttpApi"}
    assert routes == WEBHOOK_ROUTES
    assert all(e["Properties"]["ApiId"] == {"Ref": "WebhookApi"} for e in events.values() if e["Type"] == "HttpApi")
    assert "Auth" not in RESOURCES["WebhookApi"]["Properties"], "providers cannot present API keys"
    others = {
        name
        for name, function in FUNCTIONS.items()
        for event in (function["Properties"].get("Events") or {}).values()
        if event["Type"] == "HttpApi" and event["Properties"].get("ApiId") == {"Ref": "WebhookApi"}
    }
    # Custom streams post to /ingest/{stream_id}, authenticated by the stream's ingest key.
    assert others == {"WebhookReceiverFunction", "StreamIngestFunction"}
    ingest = FUNCTIONS["StreamIngestFunction"]["Properties"]["Events"]
    assert {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in ingest.values()} == {
        ("POST", "/ingest/{stream_id}")
    }


def test_the_event_processor_reports_partial_batch_failures() -> None:
    events = FUNCTIONS["EventProcessorFunction"]["Properties"]["Events"]
    (sqs,) = [e["Properties"] for e in events.values() if e["Type"] == "SQS"]
    assert sqs["Queue"] == {"Fn::GetAtt": ["WebhookQueue", "Arn"]}
    assert sqs["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_only_the_docs_readiness_and_the_dashboard_page_are_public() -> None:
    public = {route for route, event in template_routes().items() if event.get("Auth", {}).get("Authorizer") == "NONE"}
    assert public == PUBLIC_ROUTES


def test_the_authorizer_guards_every_other_route() -> None:
    auth = RESOURCES["ManagementApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "ApiKeyAuthorizer"
    authorizer = auth["Authorizers"]["ApiKeyAuthorizer"]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}
    assert authorizer["Identity"]["ReauthorizeEvery"] == 0, "a revoked key must stop working at once"
    # An identity source would make the gateway itself answer 401 for a request without a key.
    assert set(authorizer["Identity"]) == {"ReauthorizeEvery"}


# ---------------------------------------------------------------- IAM


def inline_statements() -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    for name, function in FUNCTIONS.items():
        for policy in function["Properties"].get("Policies", []):
            if isinstance(policy, dict) and "Statement" in policy:
                found.extend((name, s) for s in policy["Statement"])
    for name, resource in RESOURCES.items():
        if resource["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            found.extend((name, s) for s in resource["Properties"]["PolicyDocument"]["Statement"])
        elif resource["Type"] == "AWS::IAM::Role":
            for policy in resource["Properties"].get("Policies", []):
                found.extend((name, s) for s in policy["PolicyDocument"]["Statement"])
    return found


def actions_of(statement: dict[str, Any]) -> list[str]:
    return statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]


def test_inline_statements_name_their_resources() -> None:
    statements = inline_statements()
    assert statements, "expected at least the management function's KMS statement"
    for name, statement in statements:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        assert "*" not in resources, f"{name}: statement {statement.get('Sid')} allows every resource"


def test_no_broad_managed_policies() -> None:
    for name, function in FUNCTIONS.items():
        for policy in function["Properties"].get("Policies", []):
            if isinstance(policy, str):
                assert policy != "AdministratorAccess" and not policy.endswith("FullAccess"), f"{name}: {policy}"
    for name, resource in RESOURCES.items():
        for arn in resource.get("Properties", {}).get("ManagedPolicyArns", []):
            assert not re.search(r"(AdministratorAccess|FullAccess)$", str(arn)), f"{name}: {arn}"


def test_management_function_uses_the_credentials_key_for_envelopes_and_the_page_token_key_for_macs() -> None:
    kms = [
        s
        for name, s in inline_statements()
        if name == "ManagementFunction" and any(a.startswith("kms:") for a in actions_of(s))
    ]
    by_key: dict[str, set[str]] = {}
    for statement in kms:
        by_key.setdefault(statement["Resource"]["Fn::GetAtt"][0], set()).update(actions_of(statement))
    assert by_key == {"CredentialsKey": {"kms:GenerateDataKey", "kms:Decrypt"}, "PageTokenKey": {"kms:GenerateMac"}}


def test_every_function_that_connects_to_sources_may_open_and_reseal_credentials() -> None:
    """The sync engine stores credentials a source renewed (a rotated OAuth refresh token):
    every function that builds it needs GenerateDataKey as well as Decrypt on the key."""
    for function in ("ManagementFunction", "SyncTaskFunction", "EventProcessorFunction"):
        actions = {
            action
            for name, statement in inline_statements()
            if name == function and statement["Resource"] == {"Fn::GetAtt": ["CredentialsKey", "Arn"]}
            for action in actions_of(statement)
        }
        assert actions == {"kms:Decrypt", "kms:GenerateDataKey"}, function


def test_only_the_management_function_may_sign_page_tokens() -> None:
    signers = {name for name, s in inline_statements() if "kms:GenerateMac" in actions_of(s)}
    assert signers == {"ManagementFunction"}


def test_authorizer_only_reads_the_table() -> None:
    policies = FUNCTIONS["AuthorizerFunction"]["Properties"]["Policies"]
    assert policies == [{"DynamoDBReadPolicy": {"TableName": {"Ref": "DataTable"}}}]


# ---------------------------------------------------------------- data protection


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in RESOURCES.items() if r["Type"] == kind}


def test_kms_keys_rotate() -> None:
    keys = resources_of("AWS::KMS::Key")
    assert "CredentialsKey" in keys
    for name, key in keys.items():
        if key["Properties"].get("KeySpec", "SYMMETRIC_DEFAULT") == "SYMMETRIC_DEFAULT":
            assert key["Properties"].get("EnableKeyRotation") is True, name
        else:  # KMS cannot rotate HMAC keys; the page-token key only signs short-lived tokens
            assert key["Properties"]["KeyUsage"] == "GENERATE_VERIFY_MAC", name


def test_buckets_are_private_versioned_and_encrypted() -> None:
    buckets = resources_of("AWS::S3::Bucket")
    assert "DataLakeBucket" in buckets
    for name, bucket in buckets.items():
        props = bucket["Properties"]
        block = props["PublicAccessBlockConfiguration"]
        assert all(
            block.get(k) is True
            for k in ("BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets")
        ), name
        assert props["VersioningConfiguration"]["Status"] == "Enabled", name
        rules = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rules and all(
            r["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in {"AES256", "aws:kms", "aws:kms:dsse"} for r in rules
        ), name


def test_buckets_refuse_plain_http() -> None:
    policies = {r["Properties"]["Bucket"]["Ref"]: r for r in resources_of("AWS::S3::BucketPolicy").values()}
    for name in resources_of("AWS::S3::Bucket"):
        statements = policies[name]["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
            for s in statements
        ), name


def test_table_keeps_its_data() -> None:
    table = RESOURCES["DataTable"]
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}


# ---------------------------------------------------------------- operations


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_has_an_errors_alarm(name: str) -> None:
    alarms = [
        a["Properties"]
        for a in resources_of("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["Namespace"] == "AWS/Lambda"
        and a["Properties"]["MetricName"] == "Errors"
        and {"Name": "FunctionName", "Value": {"Ref": name}} in a["Properties"]["Dimensions"]
    ]
    assert alarms, f"{name} has no Errors alarm"
    assert all({"Ref": "AlertTopic"} in a["AlarmActions"] for a in alarms)


def test_alarms_can_publish_to_the_encrypted_topic() -> None:
    """AlertsKey lets CloudWatch use it only for alarms named `<stack name>-...`."""
    for name, alarm in resources_of("AWS::CloudWatch::Alarm").items():
        alarm_name = alarm["Properties"].get("AlarmName", {})
        assert isinstance(alarm_name, dict) and str(alarm_name.get("Fn::Sub", "")).startswith("${AWS::StackName}-"), (
            name
        )


def dashboard_body() -> dict[str, Any]:
    """The operations dashboard's body, its `${…}` references replaced by their names."""
    (dashboard,) = resources_of("AWS::CloudWatch::Dashboard").values()
    text = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    return dict(json.loads(re.sub(r"\$\{([^}]+)\}", r"<\1>", text)))


def test_the_operations_dashboard_shows_every_function_the_queues_the_workflow_and_every_alarm() -> None:
    body = dashboard_body()
    metrics = [tuple(line[:4]) for w in body["widgets"] for line in w["properties"].get("metrics", []) if len(line) > 3]
    for metric in ("Invocations", "Errors", "Throttles", "Duration"):
        assert {m[3] for m in metrics if m[:2] == ("AWS/Lambda", metric)} == {f"<{name}>" for name in FUNCTIONS}
    assert ("AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", "<WebhookQueue.QueueName>") in metrics
    assert (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        "QueueName",
        "<WebhookDeadLetterQueue.QueueName>",
    ) in metrics
    for metric in ("ExecutionsStarted", "ExecutionsFailed", "ExecutionsTimedOut"):
        assert ("AWS/States", metric, "StateMachineArn", "<SyncStateMachine>") in metrics
    (alarms,) = [w["properties"]["alarms"] for w in body["widgets"] if w["type"] == "alarm"]
    assert sorted(alarms) == sorted(f"<{name}.Arn>" for name in resources_of("AWS::CloudWatch::Alarm"))
    searched = " ".join(
        str(line[0].get("expression", ""))
        for w in body["widgets"]
        for line in w["properties"].get("metrics", [])
        if isinstance(line[0], dict)
    )
    for metric in ("WebhookEventsAccepted", "WebhookSignaturesRejected", "RecordsWritten", "RecordsRejected"):
        assert f'MetricName="{metric}"' in searched


def test_queue_age_and_sync_timeouts_have_alarms() -> None:
    watched = {
        (a["Properties"]["Namespace"], a["Properties"]["MetricName"])
        for a in resources_of("AWS::CloudWatch::Alarm").values()
    }
    assert {("AWS/SQS", "ApproximateAgeOfOldestMessage"), ("AWS/States", "ExecutionsTimedOut")} <= watched


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_every_function_has_a_log_group_with_retention(name: str) -> None:
    groups = [
        g["Properties"]
        for g in resources_of("AWS::Logs::LogGroup").values()
        if g["Properties"]["LogGroupName"] == {"Fn::Sub": f"/aws/lambda/${{{name}}}"}
    ]
    assert len(groups) == 1, f"{name} needs exactly one explicit log group"
    assert groups[0]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_outputs() -> None:
    missing = REQUIRED_OUTPUTS - set(TEMPLATE["Outputs"])
    assert not missing, f"missing outputs: {sorted(missing)}"
    assert TEMPLATE["Outputs"]["DataTableName"]["Value"] == {"Ref": "DataTable"}, "the admin CLI reads DataTableName"
