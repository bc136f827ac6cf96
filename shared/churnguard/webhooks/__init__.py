"""Real-time ingestion over webhooks, provider-agnostic: each provider's scheme and events live in
churnguard/providers/<p>/ (webhook.py, events.py), found through the provider registry.

- `receiver`: verify, limit, dedupe, enqueue (the public WebhookApi's function)
- `processor`: the SQS consumer that runs each event's canonical changes through the pipeline,
  in event-time order per record, with dead letters
- `models`, `service`, `secrets`: endpoints for the management API, secret rotation, the DLQ
"""
