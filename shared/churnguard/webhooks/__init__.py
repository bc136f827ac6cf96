"""Real-time ingestion over webhooks.

- `signatures`: each provider's signature scheme; `events`: parsing a delivery into events
- `receiver`: verify, limit, dedupe, enqueue (the public WebhookApi's function)
- `normalizers`: provider events → canonical records; `processor`: the SQS consumer that runs
  them through the pipeline, in event-time order per record, with dead letters
- `models`, `service`: endpoints for the management API, secret rotation, the DLQ
"""
