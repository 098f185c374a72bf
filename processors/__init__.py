"""Pure batch processors: no Kafka, no boto3, no aiohttp here (see ARCHITECTURE.md)."""
