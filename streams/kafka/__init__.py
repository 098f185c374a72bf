"""Kafka I/O: clients, admin, reading topics to their end, changelogs, reference tables."""
