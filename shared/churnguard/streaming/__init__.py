"""Streams: configurations, the stream processor, the HTTPS ingest path and event source mappings."""
