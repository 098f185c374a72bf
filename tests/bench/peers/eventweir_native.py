"""Contender: the eventweir native worker (streams.runtime.worker.Worker). Done = every output acked and
every offset committed."""
import asyncio

import spec
from eventweir_pipeline import TimedPipeline, bench_config, bench_pipeline

from streams.runtime.worker import Worker


async def main(args) -> None:
    config = bench_config(args)
    clock = spec.Clock()
    worker = Worker(config, pipeline=TimedPipeline(bench_pipeline(config, args.stateful, args.prefix), clock))
    task = asyncio.create_task(worker.run())
    while sum(worker.stats.committed.values()) < args.events:
        if task.done():
            task.result()
        await asyncio.sleep(0.002)
    elapsed = clock.elapsed()
    worker.request_stop()
    await task
    spec.report(args.events, elapsed, worker.stats.delivered, cpu_s=clock.cpu_s)


if __name__ == "__main__":
    from streams.runtime import eventloop

    eventloop.run(main(spec.arguments(__doc__)))  # uvloop, as `eventweir run` uses
