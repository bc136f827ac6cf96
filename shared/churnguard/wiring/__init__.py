"""The platform assembled from this function's environment: the one place that builds the
default services, engine, launcher and sinks (handlers and API routes call these; the classes
themselves take their collaborators as arguments and import nothing above their layer).

- `sinks`: the data lake and, if configured, the Analytics API, for syncs and webhooks alike;
- `services`: integrations, the sync engine and launcher, the webhook endpoint and dead-letter
  services, and the async façade `IntegrationEngine`;
- `events`: the webhook queue's consumer;
- `streams` and `ingest`: streams' processor, service, HTTPS ingest and continuous consumers;
- `cdc`: change data capture's turns, guardian, lifecycle and status.

Each is its own module so a function imports (and is checked for the settings of) only what it
builds.

Environment: TABLE_NAME, KMS_KEY_ID, DATA_LAKE_BUCKET, SYNC_STATE_MACHINE_ARN; the schedule
group, target and role when syncs are scheduled (SYNC_SCHEDULE_GROUP, SYNC_TASK_FUNCTION_ARN,
SYNC_SCHEDULER_ROLE_ARN); the webhook queues (WEBHOOK_QUEUE_URL, WEBHOOK_DLQ_URL,
WEBHOOK_MAX_RECEIVE_COUNT); and ANALYTICS_API_URL with the Secrets Manager secret
ANALYTICS_API_TOKEN_SECRET when records also go to the Analytics API; the continuous consumer
workflow (STREAM_CONSUMER_STATE_MACHINE_ARN) and the guardian's thresholds (CDC_ALERT_HOURS_LEFT,
CDC_ALERT_RETAINED_GB).
"""
