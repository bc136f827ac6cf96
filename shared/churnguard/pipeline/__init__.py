"""The one path every record takes: mapping, validation, canonical Record, sinks.

- `core`: StreamPipeline (rows → canonical JSON lines and rejects), Batch, build_pipeline
- `mapping`: field mappings and data filters; `validation`: per-entity schemas
- `records`: the Record schema and dedupe keys; `encoding`: the lossless JSON rules
- `sinks`: the S3 data lake and the Analytics API
"""
