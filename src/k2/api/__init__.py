"""The HTTP API `k2 up` serves (app.py), its server (server.py) and access rules (security.py)."""

NDJSON = "application/x-ndjson"  # a flow run's events, streamed one JSON object per line
