"""Topic administration the demo and `--create-topics` need."""
from __future__ import annotations

import logging
from collections.abc import Collection

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap_servers: str, topics: dict[str, int], compacted: Collection[str] = frozenset()) -> list[str]:
    """Create the topics that do not exist yet ({name: partitions}); returns the ones created."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(name, topics[name], 1,
                         topic_configs={"cleanup.policy": "compact"} if name in compacted else {})
                for name in missing
            ])
            log.info("created topics: %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
