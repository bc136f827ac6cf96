"""What every provider's webhook scheme is built from: signature checks, defensive parsing, the
queued event and the canonical change. providers/<p>/webhook.py and events.py use it;
churnguard.webhooks (receiver, processor) runs them through the provider registry."""
