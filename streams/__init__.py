"""How events move: Kafka I/O, the run loop, offsets, sinks, config, CLI, HTTP, metrics."""
