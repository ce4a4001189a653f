"""The server: verified ingest, storage, metrology, traceability, API and dashboard."""
