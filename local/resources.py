"""Creates the template's resources in moto, in dependency order, and answers Ref/GetAtt for them.

Every value a function or another resource sees (`Ref`, `Fn::GetAtt`) is what AWS returns for
that resource type, so handlers built against the template work unchanged. Types with no
data-plane meaning here (layers, HTTP APIs, IAM policies, permissions, ...) are recorded with a
physical id; unknown types are recorded with a warning.
"""

from __future__ import annotations

import functools
import io
import json
import logging
import random
import string
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from local.aws import Clients, name_unnamed_executions
from local.runtime import FunctionSpec
from local.template import CfnLoader, Resolver, Template, TemplateError, dependency_order, references

logger = logging.getLogger("local.resources")

# type -> (property holding an explicit physical name, longest name AWS accepts)
NAME_PROPERTIES: dict[str, tuple[str, int]] = {
    "AWS::DynamoDB::Table": ("TableName", 255),
    "AWS::Serverless::SimpleTable": ("TableName", 255),
    "AWS::S3::Bucket": ("BucketName", 63),
    "AWS::SQS::Queue": ("QueueName", 80),
    "AWS::SNS::Topic": ("TopicName", 256),
    "AWS::Kinesis::Stream": ("Name", 128),
    "AWS::CloudWatch::Alarm": ("AlarmName", 255),
    "AWS::CloudWatch::Dashboard": ("DashboardName", 255),
    "AWS::Logs::LogGroup": ("LogGroupName", 512),
    "AWS::Serverless::StateMachine": ("Name", 80),
    "AWS::StepFunctions::StateMachine": ("StateMachineName", 80),
    "AWS::Serverless::Function": ("FunctionName", 64),
    "AWS::Scheduler::ScheduleGroup": ("Name", 64),
    "AWS::Scheduler::Schedule": ("Name", 64),
    "AWS::Events::Rule": ("Name", 64),
    "AWS::IAM::Role": ("RoleName", 64),
    "AWS::IAM::ManagedPolicy": ("ManagedPolicyName", 128),
    "AWS::IAM::Policy": ("PolicyName", 128),
    "AWS::SecretsManager::Secret": ("Name", 256),
    "AWS::SSM::Parameter": ("Name", 256),
    "AWS::KMS::Alias": ("AliasName", 256),
    "AWS::Serverless::LayerVersion": ("LayerName", 140),
    "AWS::Lambda::LayerVersion": ("LayerName", 140),
}

# Recorded only: nothing to serve locally (HTTP APIs are served by the gateway from the template).
RECORDED_TYPES = frozenset(
    {
        "AWS::Serverless::LayerVersion",
        "AWS::Lambda::LayerVersion",
        "AWS::Serverless::HttpApi",
        "AWS::Serverless::Api",
        "AWS::Serverless::Application",
        "AWS::Serverless::Connector",
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Stage",
        "AWS::ApiGatewayV2::Route",
        "AWS::ApiGatewayV2::Integration",
        "AWS::ApiGatewayV2::Authorizer",
        "AWS::IAM::Policy",
        "AWS::IAM::ManagedPolicy",
        "AWS::Lambda::Permission",
        "AWS::Lambda::EventInvokeConfig",
        "AWS::Lambda::Version",
        "AWS::Lambda::Alias",
        "AWS::S3::BucketPolicy",
        "AWS::SQS::QueuePolicy",
        "AWS::SNS::TopicPolicy",
        "AWS::Logs::SubscriptionFilter",
        "AWS::Logs::MetricFilter",
        "AWS::CloudWatch::CompositeAlarm",
        "AWS::CloudFormation::WaitConditionHandle",
    }
)

# Properties resolved after everything exists: they may refer back to resources that refer to
# this one (a function's environment naming the state machine that invokes it).
DEFERRED_PROPERTIES = {
    "AWS::Serverless::Function": frozenset({"Environment", "Events", "Policies"}),
    "AWS::Serverless::StateMachine": frozenset({"Events", "Policies"}),
}

_TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": ["lambda.amazonaws.com", "states.amazonaws.com", "scheduler.amazonaws.com"]},
                "Action": "sts:AssumeRole",
            }
        ],
    }
)


@dataclass
class Resource:
    """A provisioned (or recorded) resource and the values CloudFormation would expose for it."""

    logical_id: str
    type: str
    physical_id: str = ""
    ref: Any = None
    arn: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        summary: dict[str, Any] = {"type": self.type, "physical_id": self.physical_id}
        if self.arn:
            summary["arn"] = self.arn
        return summary


class Provisioner:
    """Creates a template's resources in moto; is the `ResourceLookup` of its resolver."""

    def __init__(self, template: Template, clients: Clients, *, api_endpoints: dict[str, str]) -> None:
        self.template = template
        self.clients = clients
        self.api_endpoints = api_endpoints
        self.resolver = Resolver(template, self)
        self.resources: dict[str, Resource] = {}
        self.functions: dict[str, FunctionSpec] = {}
        self._execution_role_arn: str | None = None
        self._random = random.SystemRandom()
        self._creators: dict[str, Callable[[Resource, dict[str, Any]], None]] = {
            "AWS::DynamoDB::Table": self._table,
            "AWS::Serverless::SimpleTable": self._simple_table,
            "AWS::KMS::Key": self._kms_key,
            "AWS::KMS::Alias": self._kms_alias,
            "AWS::S3::Bucket": self._bucket,
            "AWS::SNS::Topic": self._topic,
            "AWS::SNS::Subscription": self._subscription,
            "AWS::SQS::Queue": self._queue,
            "AWS::Kinesis::Stream": self._stream,
            "AWS::CloudWatch::Alarm": self._alarm,
            "AWS::CloudWatch::Dashboard": self._dashboard,
            "AWS::Logs::LogGroup": self._log_group,
            "AWS::IAM::Role": self._role,
            "AWS::Serverless::StateMachine": self._state_machine,
            "AWS::StepFunctions::StateMachine": self._state_machine,
            "AWS::Serverless::Function": self._function,
            "AWS::Scheduler::ScheduleGroup": self._schedule_group,
            "AWS::Scheduler::Schedule": self._schedule,
            "AWS::Events::Rule": self._event_rule,
            "AWS::SecretsManager::Secret": self._secret,
            "AWS::SSM::Parameter": self._ssm_parameter,
        }

    # ------------------------------------------------------------------ lookup
    def ref(self, logical_id: str) -> Any:
        return self._provisioned(logical_id).ref

    def get_att(self, logical_id: str, attribute: str) -> Any:
        resource = self._provisioned(logical_id)
        if attribute not in resource.attributes:
            known = ", ".join(sorted(resource.attributes)) or "none"
            raise TemplateError(
                f"Fn::GetAtt {logical_id}.{attribute}: {resource.type} attributes known locally are {known}"
            )
        return resource.attributes[attribute]

    def _provisioned(self, logical_id: str) -> Resource:
        if logical_id not in self.resources:
            raise TemplateError(f"{logical_id} is referred to before it exists (missing DependsOn or a cycle?)")
        return self.resources[logical_id]

    def resolve_property(self, logical_id: str, name: str, default: Any = None) -> Any:
        """A property of a resource, resolved now that every resource exists."""
        raw = self.template.resources[logical_id].get("Properties") or {}
        return self.resolver.resolve(raw[name]) if name in raw else default

    # ------------------------------------------------------------------ provisioning
    def provision(self) -> None:
        """Creates every resource, dependencies first, then the functions with their environment."""
        graph = {
            logical_id: self._dependencies(logical_id, definition)
            for logical_id, definition in self.template.resources.items()
        }
        for logical_id in dependency_order(graph):
            definition = self.template.resources[logical_id]
            resource = Resource(logical_id=logical_id, type=definition["Type"])
            properties = self._provisioning_properties(resource.type, definition.get("Properties") or {})
            creator = self._creators.get(resource.type, self._record)
            _explained(resource, functools.partial(self._create, resource, properties, creator))
            self.resources[logical_id] = resource
        for logical_id in self.template.resources_of_type("AWS::Serverless::Function"):
            function = self.resources[logical_id]
            _explained(function, functools.partial(self._create_function, function))

    def _create(
        self, resource: Resource, properties: dict[str, Any], creator: Callable[[Resource, dict[str, Any]], None]
    ) -> None:
        resource.properties = self.resolver.resolve(properties)
        creator(resource, resource.properties)

    def _provisioning_properties(self, resource_type: str, properties: dict[str, Any]) -> dict[str, Any]:
        if resource_type in RECORDED_TYPES or resource_type not in self._creators:
            name_property = NAME_PROPERTIES.get(resource_type, ("", 0))[0]
            return {key: value for key, value in properties.items() if key == name_property}
        deferred = DEFERRED_PROPERTIES.get(resource_type, frozenset())
        return {key: value for key, value in properties.items() if key not in deferred}

    def _dependencies(self, logical_id: str, definition: dict[str, Any]) -> set[str]:
        properties = self._provisioning_properties(definition["Type"], definition.get("Properties") or {})
        found = references(properties, self.template)
        depends_on = definition.get("DependsOn") or []
        found.update([depends_on] if isinstance(depends_on, str) else depends_on)
        unknown = sorted(dep for dep in found if dep not in self.template.resources)
        if unknown:
            raise TemplateError(f"{logical_id} depends on missing resources {', '.join(unknown)}")
        found.discard(logical_id)
        return found

    def physical_name(self, resource: Resource, properties: dict[str, Any]) -> str:
        """The explicit name property, else `<stack>-<LogicalId>-<8 random lowercase>` (S3-legal)."""
        name_property, limit = NAME_PROPERTIES.get(resource.type, ("", 128))
        explicit = properties.get(name_property) if name_property else None
        if explicit:
            return str(explicit)
        return self.generated_name(resource.logical_id, limit)

    def generated_name(self, logical_id: str, limit: int = 64) -> str:
        """`<stack>-<LogicalId>-<8 random lowercase>`, lower-cased and cut to fit `limit`."""
        suffix = "".join(self._random.choice(string.ascii_lowercase) for _ in range(8))
        prefix = f"{self.template.stack_name}-{logical_id}".lower()[: limit - len(suffix) - 1]
        return f"{prefix}-{suffix}"

    def _arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.template.region}:{self.template.account_id}:{resource}"

    def execution_role_arn(self) -> str:
        """A dummy IAM role for moto APIs that insist on one (Lambda, Step Functions, Scheduler)."""
        if self._execution_role_arn is None:
            name = f"{self.template.stack_name}-local-execution"[:64]
            iam = self.clients("iam")
            try:
                role = iam.create_role(RoleName=name, AssumeRolePolicyDocument=_TRUST_POLICY)
            except iam.exceptions.EntityAlreadyExistsException:
                role = iam.get_role(RoleName=name)
            self._execution_role_arn = str(role["Role"]["Arn"])
        return self._execution_role_arn

    def record(self, logical_id: str, resource_type: str) -> Resource:
        """Records a resource SAM generates without a template entry (the implicit HTTP API)."""
        resource = Resource(logical_id=logical_id, type=resource_type)
        self._record(resource, {})
        self.resources[logical_id] = resource
        return resource

    # ------------------------------------------------------------------ creators
    def _record(self, resource: Resource, properties: dict[str, Any]) -> None:
        if resource.type not in RECORDED_TYPES:
            logger.warning("%s: type %s is not emulated locally; recorded only", resource.logical_id, resource.type)
        resource.physical_id = self.physical_name(resource, properties)
        resource.ref = resource.physical_id
        if resource.type in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            resource.ref = resource.arn = self._arn("lambda", f"layer:{resource.physical_id}:1")
        elif resource.type in ("AWS::Serverless::HttpApi", "AWS::Serverless::Api", "AWS::ApiGatewayV2::Api"):
            api_id = "".join(self._random.choice(string.ascii_lowercase + string.digits) for _ in range(10))
            resource.physical_id = resource.ref = api_id
            endpoint = self.api_endpoints.get(
                resource.logical_id, f"https://{api_id}.execute-api.{self.template.region}.amazonaws.com"
            )
            resource.attributes = {"ApiId": api_id, "ApiEndpoint": endpoint, "RootResourceId": api_id}
        elif resource.type == "AWS::IAM::ManagedPolicy":
            resource.ref = resource.arn = f"arn:aws:iam::{self.template.account_id}:policy/{resource.physical_id}"
            resource.attributes = {"PolicyArn": resource.arn}

    def _table(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        billing = props.get("BillingMode", "PROVISIONED")
        default_throughput = {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        request: dict[str, Any] = {
            "TableName": name,
            "KeySchema": props["KeySchema"],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "BillingMode": billing,
        }
        if billing == "PROVISIONED":
            request["ProvisionedThroughput"] = _ints(props.get("ProvisionedThroughput") or default_throughput)
        if props.get("GlobalSecondaryIndexes"):
            request["GlobalSecondaryIndexes"] = [
                {
                    **_pick(index, "IndexName", "KeySchema", "Projection"),
                    **(
                        {"ProvisionedThroughput": _ints(index.get("ProvisionedThroughput") or default_throughput)}
                        if billing == "PROVISIONED"
                        else {}
                    ),
                }
                for index in props["GlobalSecondaryIndexes"]
            ]
        if props.get("LocalSecondaryIndexes"):
            request["LocalSecondaryIndexes"] = [
                _pick(index, "IndexName", "KeySchema", "Projection") for index in props["LocalSecondaryIndexes"]
            ]
        stream = props.get("StreamSpecification")
        if stream:
            request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
        sse = props.get("SSESpecification")
        if sse:
            request["SSESpecification"] = {
                "Enabled": _bool(sse.get("SSEEnabled", False)),
                **_pick(sse, "SSEType", "KMSMasterKeyId"),
            }
        if "TableClass" in props:
            request["TableClass"] = props["TableClass"]
        if "DeletionProtectionEnabled" in props:
            request["DeletionProtectionEnabled"] = _bool(props["DeletionProtectionEnabled"])
        dynamodb = self.clients("dynamodb")
        description = dynamodb.create_table(**request)["TableDescription"]
        ttl = props.get("TimeToLiveSpecification")
        if ttl and _bool(ttl.get("Enabled", False)):
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        recovery = props.get("PointInTimeRecoverySpecification")
        if recovery and _bool(recovery.get("PointInTimeRecoveryEnabled", False)):
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
            )
        resource.arn = description["TableArn"]
        resource.attributes = {"Arn": resource.arn}
        if description.get("LatestStreamArn"):
            resource.attributes["StreamArn"] = description["LatestStreamArn"]

    def _simple_table(self, resource: Resource, props: dict[str, Any]) -> None:
        key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
        key_type = {"String": "S", "Number": "N", "Binary": "B"}[key.get("Type", "String")]
        table_props: dict[str, Any] = {
            "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": key_type}],
            "BillingMode": "PROVISIONED" if props.get("ProvisionedThroughput") else "PAY_PER_REQUEST",
            **_pick(props, "TableName", "ProvisionedThroughput", "SSESpecification"),
        }
        self._table(resource, table_props)

    def _kms_key(self, resource: Resource, props: dict[str, Any]) -> None:
        request = _pick(props, "Description", "KeyUsage", "KeySpec", "MultiRegion")
        if "KeyPolicy" in props:
            policy = props["KeyPolicy"]
            request["Policy"] = policy if isinstance(policy, str) else json.dumps(policy)
        kms = self.clients("kms")
        metadata = kms.create_key(**request)["KeyMetadata"]
        key_id = metadata["KeyId"]
        if _bool(props.get("EnableKeyRotation", False)):
            kms.enable_key_rotation(KeyId=key_id)
        if not _bool(props.get("Enabled", True)):
            kms.disable_key(KeyId=key_id)
        resource.physical_id = resource.ref = key_id
        resource.arn = metadata["Arn"]
        resource.attributes = {"Arn": resource.arn, "KeyId": key_id}

    def _kms_alias(self, resource: Resource, props: dict[str, Any]) -> None:
        self.clients("kms").create_alias(AliasName=props["AliasName"], TargetKeyId=props["TargetKeyId"])
        resource.physical_id = resource.ref = props["AliasName"]
        resource.arn = self._arn("kms", props["AliasName"])

    def _bucket(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props).lower()
        s3 = self.clients("s3")
        request: dict[str, Any] = {"Bucket": name}
        if self.template.region != "us-east-1":
            request["CreateBucketConfiguration"] = {"LocationConstraint": self.template.region}
        if _bool(props.get("ObjectLockEnabled", False)):
            request["ObjectLockEnabledForBucket"] = True
        s3.create_bucket(**request)
        encryption = props.get("BucketEncryption")
        if encryption:
            rules = [_encryption_rule(rule) for rule in encryption["ServerSideEncryptionConfiguration"]]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if props.get("VersioningConfiguration"):
            s3.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]}
            )
        if props.get("PublicAccessBlockConfiguration"):
            block = {key: _bool(value) for key, value in props["PublicAccessBlockConfiguration"].items()}
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=block)
        if props.get("OwnershipControls"):
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls=props["OwnershipControls"])
        if props.get("LifecycleConfiguration"):
            rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        if props.get("CorsConfiguration"):
            s3.put_bucket_cors(
                Bucket=name,
                CORSConfiguration={"CORSRules": [_cors_rule(r) for r in props["CorsConfiguration"]["CorsRules"]]},
            )
        region = self.template.region
        resource.arn = f"arn:aws:s3:::{name}"
        resource.attributes = {
            "Arn": resource.arn,
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{region}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{region}.amazonaws.com",
        }

    def _topic(self, resource: Resource, props: dict[str, Any]) -> None:
        name = self.physical_name(resource, props)
        fifo = _bool(props.get("FifoTopic", False))
        if fifo and not name.endswith(".fifo"):
            name += ".fifo"
        attributes: dict[str, str] = {
            key: _text(props[key])
            for key in (
                "DisplayName",
                "KmsMasterKeyId",
                "ContentBasedDeduplication",
                "SignatureVersion",
                "TracingConfig",
            )
            if key in props
        }
        if fifo:
            attributes["FifoTopic"] = "true"
        sns = self.clients("sns")
        arn = sns.create_topic(Name=name, Attributes=attributes)["TopicArn"]
        for subscription in props.get("Subscription") or []:
            sns.subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])
        resource.physical_id = resource.ref = resource.arn = arn
        resource.attributes = {"TopicArn": arn, "TopicName": name}

    def _subscription(self, resource: Resource, props: dict[str, Any]) -> None:
        attributes = {
            key: value if isinstance(value, str) else json.dumps(value)
            for key, value in props.items()
            if key in ("FilterPolicy", "FilterPolicyScope", "RedrivePolicy", "DeliveryPolicy")
        }
        if "RawMessageDelivery" in props:
            attributes["RawMessageDelivery"] = _text(props["RawMessageDelivery"])
        arn = self.clients("sns").subscribe(
            TopicArn=props["TopicArn"],
            Protocol=props["Protocol"],
            Endpoint=props.get("Endpoint", ""),
            Attributes=attributes,
            ReturnSubscriptionArn=True,
        )["SubscriptionArn"]
        resource.physical_id = resource.ref = resource.arn = arn

    def _queue(self, resource: Resource, props: dict[str, Any]) -> None:
        name = self.physical_name(resource, props)
        fifo = _bool(props.get("FifoQueue", False))
        if fifo and not name.endswith(".fifo"):
            name = name[:75] + ".fifo"
        attributes: dict[str, str] = {}
        for key in (
            "DelaySeconds",
            "MaximumMessageSize",
            "MessageRetentionPeriod",
            "ReceiveMessageWaitTimeSeconds",
            "VisibilityTimeout",
            "KmsMasterKeyId",
            "KmsDataKeyReusePeriodSeconds",
            "SqsManagedSseEnabled",
            "ContentBasedDeduplication",
            "DeduplicationScope",
            "FifoThroughputLimit",
        ):
            if key in props:
                attributes[key] = _text(props[key])
        for key in ("RedrivePolicy", "RedriveAllowPolicy"):
            if key in props:
                value = props[key]
                attributes[key] = value if isinstance(value, str) else json.dumps(value)
        if fifo:
            attributes["FifoQueue"] = "true"
        url = self.clients("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        resource.physical_id = resource.ref = url
        resource.arn = self._arn("sqs", name)
        resource.attributes = {"Arn": resource.arn, "QueueName": name, "QueueUrl": url}

    def _stream(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        kinesis = self.clients("kinesis")
        mode = (props.get("StreamModeDetails") or {}).get("StreamMode", "PROVISIONED")
        if mode == "ON_DEMAND":
            kinesis.create_stream(StreamName=name, StreamModeDetails={"StreamMode": "ON_DEMAND"})
        else:
            kinesis.create_stream(StreamName=name, ShardCount=int(props.get("ShardCount", 1)))
        hours = int(props.get("RetentionPeriodHours", 24))
        if hours > 24:
            kinesis.increase_stream_retention_period(StreamName=name, RetentionPeriodHours=hours)
        encryption = props.get("StreamEncryption")
        if encryption:
            kinesis.start_stream_encryption(
                StreamName=name, EncryptionType=encryption["EncryptionType"], KeyId=encryption["KeyId"]
            )
        resource.arn = self._arn("kinesis", f"stream/{name}")
        resource.attributes = {"Arn": resource.arn}

    def _alarm(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        request = _pick(
            props,
            "AlarmDescription",
            "OKActions",
            "AlarmActions",
            "InsufficientDataActions",
            "MetricName",
            "Namespace",
            "Statistic",
            "ExtendedStatistic",
            "Dimensions",
            "Unit",
            "ComparisonOperator",
            "TreatMissingData",
            "EvaluateLowSampleCountPercentile",
            "Metrics",
            "ThresholdMetricId",
        )
        for key in ("Period", "EvaluationPeriods", "DatapointsToAlarm"):
            if key in props:
                request[key] = int(props[key])
        if "Threshold" in props:
            request["Threshold"] = float(props["Threshold"])
        if "ActionsEnabled" in props:
            request["ActionsEnabled"] = _bool(props["ActionsEnabled"])
        self.clients("cloudwatch").put_metric_alarm(AlarmName=name, **request)
        resource.arn = self._arn("cloudwatch", f"alarm:{name}")
        resource.attributes = {"Arn": resource.arn}

    def _dashboard(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        body = props.get("DashboardBody", "{}")
        self.clients("cloudwatch").put_dashboard(
            DashboardName=name, DashboardBody=body if isinstance(body, str) else json.dumps(body)
        )

    def _log_group(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        logs = self.clients("logs")
        logs.create_log_group(logGroupName=name)
        if "RetentionInDays" in props:
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(props["RetentionInDays"]))
        resource.arn = self._arn("logs", f"log-group:{name}:*")
        resource.attributes = {"Arn": resource.arn}

    def _role(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        trust = props.get("AssumeRolePolicyDocument") or json.loads(_TRUST_POLICY)
        iam = self.clients("iam")
        role = iam.create_role(
            RoleName=name,
            AssumeRolePolicyDocument=trust if isinstance(trust, str) else json.dumps(trust),
            **_pick(props, "Path", "Description"),
        )["Role"]
        for policy in props.get("Policies") or []:
            document = policy["PolicyDocument"]
            iam.put_role_policy(
                RoleName=name,
                PolicyName=policy["PolicyName"],
                PolicyDocument=document if isinstance(document, str) else json.dumps(document),
            )
        resource.arn = role["Arn"]
        resource.attributes = {"Arn": role["Arn"], "RoleId": role["RoleId"]}

    def _state_machine(self, resource: Resource, props: dict[str, Any]) -> None:
        name_unnamed_executions()
        name = self.physical_name(resource, props)
        definition = self._state_machine_definition(resource, props)
        role = props.get("Role") or props.get("RoleArn") or self.execution_role_arn()
        kind = props.get("Type") or props.get("StateMachineType") or "STANDARD"
        arn = self.clients("stepfunctions").create_state_machine(
            name=name, definition=definition, roleArn=role, type=kind
        )["stateMachineArn"]
        resource.physical_id = resource.ref = resource.arn = arn
        resource.attributes = {"Arn": arn, "Name": name}

    def _state_machine_definition(self, resource: Resource, props: dict[str, Any]) -> str:
        if "Definition" in props:
            definition: Any = props["Definition"]
        elif "DefinitionString" in props:
            definition = json.loads(props["DefinitionString"])
        elif isinstance(props.get("DefinitionUri"), str):
            path = self.template.directory / props["DefinitionUri"]
            if not path.is_file():
                raise TemplateError(f"{resource.logical_id}: DefinitionUri {path} does not exist")
            definition = yaml.load(path.read_text(encoding="utf-8"), Loader=CfnLoader)  # noqa: S506
        else:
            raise TemplateError(
                f"{resource.logical_id}: only a local DefinitionUri or an inline Definition works locally"
            )
        substitutions = {key: _text(value) for key, value in (props.get("DefinitionSubstitutions") or {}).items()}
        return json.dumps(_substitute(definition, substitutions))

    def _function(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        resource.arn = self._arn("lambda", f"function:{name}")
        resource.attributes = {"Arn": resource.arn}

    def _create_function(self, resource: Resource) -> None:
        """Creates the moto function (for Step Functions and `lambda.invoke`) and its runtime spec."""
        props = resource.properties
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str):
            raise TemplateError(f"{resource.logical_id}: only a local CodeUri directory works locally")
        code_dir = (self.template.directory / code_uri).resolve()
        if not code_dir.is_dir():
            raise TemplateError(f"{resource.logical_id}: CodeUri {code_dir} is not a directory")
        runtime = str(props.get("Runtime", "python3.11"))
        if not runtime.startswith("python"):
            raise TemplateError(f"{resource.logical_id}: runtime {runtime} cannot run in-process")
        environment = self.resolve_property(resource.logical_id, "Environment", {}) or {}
        variables = {key: _text(value) for key, value in (environment.get("Variables") or {}).items()}
        role = str(props.get("Role") or self.execution_role_arn())
        spec = FunctionSpec(
            logical_id=resource.logical_id,
            name=resource.physical_id,
            arn=str(resource.arn),
            code_dir=code_dir,
            handler=str(props["Handler"]),
            variables=variables,
            memory_mb=int(props.get("MemorySize", 128)),
            timeout_s=int(props.get("Timeout", 3)),
            runtime=runtime,
            role_arn=role,
        )
        self.clients("lambda").create_function(
            FunctionName=spec.name,
            Runtime=runtime,
            Role=self.execution_role_arn(),
            Handler=spec.handler,
            Code={"ZipFile": _placeholder_zip()},
            Timeout=spec.timeout_s,
            MemorySize=spec.memory_mb,
            Environment={"Variables": variables},
        )
        self.functions[resource.logical_id] = spec

    def _schedule_group(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        resource.arn = self.clients("scheduler").create_schedule_group(Name=name)["ScheduleGroupArn"]
        resource.attributes = {"Arn": resource.arn}

    def _schedule(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        target = dict(props["Target"])
        target.setdefault("RoleArn", self.execution_role_arn())
        request = _pick(
            props,
            "GroupName",
            "ScheduleExpressionTimezone",
            "StartDate",
            "EndDate",
            "State",
            "Description",
            "ActionAfterCompletion",
            "KmsKeyArn",
        )
        window = props.get("FlexibleTimeWindow") or {"Mode": "OFF"}
        resource.arn = self.clients("scheduler").create_schedule(
            Name=name,
            ScheduleExpression=props["ScheduleExpression"],
            FlexibleTimeWindow=_ints(window, "MaximumWindowInMinutes"),
            Target=target,
            **request,
        )["ScheduleArn"]
        resource.attributes = {"Arn": resource.arn}

    def _event_rule(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        request = _pick(props, "ScheduleExpression", "State", "Description", "EventBusName", "RoleArn")
        if "EventPattern" in props:
            pattern = props["EventPattern"]
            request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        events = self.clients("events")
        resource.arn = events.put_rule(Name=name, **request)["RuleArn"]
        targets = props.get("Targets") or []
        if targets:
            events.put_targets(Rule=name, **_pick(props, "EventBusName"), Targets=targets)
        resource.attributes = {"Arn": resource.arn}

    def _secret(self, resource: Resource, props: dict[str, Any]) -> None:
        name = self.physical_name(resource, props)
        secret = props.get("SecretString")
        if secret is None:
            generate = props.get("GenerateSecretString") or {}
            value = "".join(self._random.choice(string.ascii_letters + string.digits) for _ in range(32))
            template_text = generate.get("SecretStringTemplate")
            if template_text and generate.get("GenerateStringKey"):
                secret = json.dumps({**json.loads(template_text), generate["GenerateStringKey"]: value})
            else:
                secret = value
        arn = self.clients("secretsmanager").create_secret(
            Name=name, SecretString=secret, **_pick(props, "Description", "KmsKeyId")
        )["ARN"]
        resource.physical_id = resource.ref = resource.arn = arn

    def _ssm_parameter(self, resource: Resource, props: dict[str, Any]) -> None:
        name = resource.physical_id = resource.ref = self.physical_name(resource, props)
        self.clients("ssm").put_parameter(
            Name=name, Value=_text(props["Value"]), Type=props.get("Type", "String"), **_pick(props, "Description")
        )
        resource.attributes = {"Type": props.get("Type", "String"), "Value": _text(props["Value"])}


def _explained(resource: Resource, create: Callable[[], None]) -> None:
    """Runs a creator, naming the resource in any error so a template mistake is easy to find."""
    try:
        create()
    except TemplateError as exc:
        raise TemplateError(f"{resource.logical_id}: {exc}") from exc
    except Exception as exc:
        raise TemplateError(f"cannot create {resource.logical_id} ({resource.type}) in moto: {exc}") from exc


def _pick(source: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {key: source[key] for key in keys if key in source}


def _bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _ints(values: dict[str, Any], *only: str) -> dict[str, Any]:
    return {key: int(value) if (not only or key in only) else value for key, value in values.items()}


def _substitute(node: Any, substitutions: dict[str, str]) -> Any:
    """SAM's DefinitionSubstitutions: replaces `${Key}` in every string of the definition."""
    if isinstance(node, dict):
        return {key: _substitute(value, substitutions) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(value, substitutions) for value in node]
    if isinstance(node, str):
        for key, value in substitutions.items():
            node = node.replace("${" + key + "}", value)
    return node


def _encryption_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """Turns a CloudFormation bucket encryption rule into the S3 API's shape."""
    converted: dict[str, Any] = {"BucketKeyEnabled": _bool(rule.get("BucketKeyEnabled", False))}
    if "ServerSideEncryptionByDefault" in rule:
        converted["ApplyServerSideEncryptionByDefault"] = rule["ServerSideEncryptionByDefault"]
    return converted


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """Turns a CloudFormation lifecycle rule into the S3 API's shape."""
    converted: dict[str, Any] = {"Status": rule.get("Status", "Enabled"), "Filter": {"Prefix": rule.get("Prefix", "")}}
    if "Id" in rule:
        converted["ID"] = rule["Id"]
    if "ExpirationInDays" in rule:
        converted["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "NoncurrentVersionExpiration" in rule:
        converted["NoncurrentVersionExpiration"] = _ints(rule["NoncurrentVersionExpiration"])
    elif "NoncurrentVersionExpirationInDays" in rule:
        converted["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        converted["AbortIncompleteMultipartUpload"] = _ints(rule["AbortIncompleteMultipartUpload"])
    if "Transitions" in rule:
        converted["Transitions"] = [
            {
                "StorageClass": t["StorageClass"],
                **({"Days": int(t["TransitionInDays"])} if "TransitionInDays" in t else {}),
            }
            for t in rule["Transitions"]
        ]
    return converted


def _cors_rule(rule: dict[str, Any]) -> dict[str, Any]:
    renamed = {"ExposedHeaders": "ExposeHeaders", "Id": "ID", "MaxAge": "MaxAgeSeconds"}
    return {renamed.get(key, key): value for key, value in rule.items()}


def _placeholder_zip() -> bytes:
    """Code moto stores for the function; never run, since invocations are served in-process."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("placeholder.py", "# served in-process by the local cloud\n")
    return buffer.getvalue()
