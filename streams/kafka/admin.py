"""Topic administration the demo and `--create-topics` need."""
from __future__ import annotations

import logging
from collections.abc import Collection

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap_servers: str, topics: dict[str, int], compacted: Collection[str] = frozenset(),
                        configs: dict[str, dict[str, str]] | None = None) -> list[str]:
    """Create the topics that do not exist yet ({name: partitions}); returns the ones created.
    `configs`: topic configs by topic (an archive's retention.ms)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if missing:
            await admin.create_topics([
                NewTopic(name, topics[name], 1,
                         topic_configs={**({"cleanup.policy": "compact"} if name in compacted else {}),
                                        **(configs or {}).get(name, {})})
                for name in missing
            ])
            log.info("created topics: %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()


async def set_topic_config(bootstrap_servers: str, topic: str, settings: dict[str, str]) -> None:
    """Change a topic's configs (AlterConfigs); raises what the broker answers (Tansu has no AlterConfigs)."""
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, settings)])
    finally:
        await admin.close()
