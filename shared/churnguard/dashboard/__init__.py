"""The operations dashboard: what an operator sees of the platform. So far its readiness probe."""
