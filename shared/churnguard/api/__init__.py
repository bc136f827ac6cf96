"""HTTP layer of the management API: routers, request checks and the one error shape."""
