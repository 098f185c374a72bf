"""Inbound HTTP: health and metrics (app.py), the EventBridge API, the waiting room's public API."""
