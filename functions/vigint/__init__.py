"""Vigint cloud functions: ingest, analysis, alerting and expiring video links (see docs/contracts.md)."""
