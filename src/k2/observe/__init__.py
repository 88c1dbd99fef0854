"""Observability: metrics, health checks."""
