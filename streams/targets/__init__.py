"""Targets: where deliveries go. Each settles the worker's offset tickets once its data is durable."""
