"""`eventweir run -c config.yaml`: the long-running worker."""
from __future__ import annotations

import os
import sys


def register(sub) -> None:
    p = sub.add_parser("run", help="run the worker (one consumer-group member) until SIGTERM")
    p.add_argument("-c", "--config", default=os.environ.get("EVENTWEIR_CONFIG"),
                   help="YAML config file (or $EVENTWEIR_CONFIG)")
    p.add_argument("--create-topics", action="store_true",
                   help="create missing source, target and dead-letter topics before starting")
    p.add_argument("--partitions", type=int, default=6, help="partitions for topics created by --create-topics")
    p.add_argument("--runtime", choices=("native", "faust"), default=os.environ.get("EVENTWEIR_RUNTIME", "native"),
                   help="native: eventweir's own consumer loop; faust: the same pipeline as faust-streaming agents")
    p.add_argument("--log-level", default=os.environ.get("EVENTWEIR_LOG_LEVEL", "INFO"))
    p.set_defaults(func=run)


def config_topics(config) -> list[str]:
    topics = list(config.source_topics) + [config.dead_letter.topic]
    for rule in config.rules:
        topics += [t.topic for t in rule.targets if t.type == "kafka" and t.topic]
        topics += [t.dead_letter_topic for t in rule.targets if t.dead_letter_topic]
    return list(dict.fromkeys(topics))


def run(args) -> int:
    import signal

    # a SIGTERM before the worker is up has nothing to drain: exit cleanly (the worker installs its own)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    import logging

    from streams.config import ConfigError, load_config

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.config:
        print("eventweir run: no config given; pass -c config.yaml or set EVENTWEIR_CONFIG", file=sys.stderr)
        return 2
    try:
        config = load_config(args.config)
        from streams.targets import check_targets

        check_targets(config)
    except ConfigError as exc:
        print("eventweir: invalid configuration, the worker did not start:\n  " + str(exc).replace("\n", "\n  "),
              file=sys.stderr)
        return 2

    async def main() -> int:
        from streams.service import run_worker

        if args.create_topics:
            from streams.kafka.admin import ensure_topics

            await ensure_topics(config.kafka.bootstrap_servers, {t: args.partitions for t in config_topics(config)})
        if getattr(args, "runtime", "native") == "faust":
            from streams.runtime.faust import FaustWorker
            from streams.service import build_waitingroom

            return await run_worker(config, FaustWorker(config, waitingroom=build_waitingroom(config)))
        return await run_worker(config)

    from aiokafka.errors import KafkaConnectionError

    try:
        from streams.runtime.eventloop import run

        return run(main())
    except ConfigError as exc:  # sections validated when their service is built (e.g. waitingroom)
        print(f"eventweir: invalid configuration, the worker did not start:\n  {exc}", file=sys.stderr)
        return 2
    except KafkaConnectionError as exc:
        print(f"eventweir: cannot reach Kafka at {config.kafka.bootstrap_servers} ({exc}); check "
              "kafka.bootstrap_servers (or KAFKA_BOOTSTRAP_SERVERS) and that the brokers are up", file=sys.stderr)
        return 1
    except LookupError as exc:
        print(f"eventweir: {exc}; create it, or start with --create-topics", file=sys.stderr)
        return 1
