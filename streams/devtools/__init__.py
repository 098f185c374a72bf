"""Developer tooling: the demo, the event generator, the embedded broker. Never imported by the runtime."""
