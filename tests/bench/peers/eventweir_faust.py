"""Contender: eventweir on faust-streaming (streams.runtime.faust.FaustWorker). Done = every
record consumed and every output acked (faust commits on its own interval)."""
import asyncio
import logging

import spec
from eventweir_pipeline import TimedPipeline, bench_config, bench_pipeline

from streams.runtime.faust import FaustWorker


async def main(args) -> None:
    logging.basicConfig(level=logging.WARNING)
    config = bench_config(args)
    clock = spec.Clock()
    worker = FaustWorker(config, pipeline=TimedPipeline(bench_pipeline(config, args.stateful, args.prefix), clock))
    task = asyncio.create_task(worker.run())
    while worker.stats.consumed < args.events or any(t.in_flight for t in worker.targets.values()):
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    elapsed = clock.elapsed()
    worker.request_stop()
    await task
    spec.report(args.events, elapsed, worker.stats.delivered, cpu_s=clock.cpu_s)


if __name__ == "__main__":
    asyncio.run(main(spec.arguments(__doc__)))
