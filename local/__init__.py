"""The local cloud: runs the SAM application in one process on moto, without Docker or AWS.

`local.cloud.LocalCloud` is the entry point for tests; `python -m local` is the one for `make dev`.
Nothing here is imported by production code. The package stays import-light so that
`python -m local` starts serving quickly.
"""
