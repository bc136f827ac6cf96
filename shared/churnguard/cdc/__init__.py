"""Change data capture: databases' logs streamed into the lake (see capture.py)."""
