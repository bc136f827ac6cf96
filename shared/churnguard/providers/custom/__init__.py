"""Custom sources: REST rules and custom webhooks. See README.md in this folder."""
