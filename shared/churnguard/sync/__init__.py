"""The sync engine: `engine.SyncEngine` (start, prepare, extract_step, finalize, cancel, status,
history, test_connection) over `store.syncs`; `models` holds the run and the task payloads."""
