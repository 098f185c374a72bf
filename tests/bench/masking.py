"""PII masking on clickstream events, against the consume + parse floor (`masking_vs_floor`, floor 0.30).

The clickstream records of tests/bench/enrich.py are produced to a topic on a real broker (Tansu
started here unless KAFKA_BOOTSTRAP_SERVERS is set). Each repeat reads the topic from the beginning
three times: only `orjson.loads` per value (the floor), then what a clickstream source without
masking runs (decode -> validate -> normalise), then the same with `mask:` (decode -> validate ->
mask -> normalise): the schema's x-pii (user_id and anonymous_id by hmac, ip truncated) plus
`properties.price` generalised to a bucket and `page.url` redacted, five fields per event, each
masked event written again as its masked record. Ratios are events/s over the floor's, medians of
the repeats; the in-process rate on pre-built batches is printed too.

    python tests/bench/masking.py [--quick] [--n N] [--repeats R]
"""
from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import orjson  # noqa: E402
from common import Broker, Reader, preproduce  # noqa: E402
from enrich import BASE_MS, click_values  # noqa: E402

from processors.chain import Chain  # noqa: E402
from processors.core import SourceRecord  # noqa: E402
from processors.decode import Decoder  # noqa: E402
from processors.normalise import ClickstreamNormaliser  # noqa: E402
from processors.validate import SchemaValidator  # noqa: E402
from streams.config.mask import MaskSettings  # noqa: E402
from streams.runtime import eventloop, tuning  # noqa: E402

FLOOR_RATIO = 0.30
MASK = MaskSettings.model_validate({
    "hmac_secret": "bench-key-0123456789abcdef0123456789",
    "fields": {"properties.price": {"method": "generalise", "bucket": 10}, "page.url": "redact"},
})


def stages(topic: str, masked: bool) -> list:
    chain: list = [Decoder(), SchemaValidator({topic: "clickstream@v1"})]
    if masked:
        chain.append(MASK.masker(["clickstream@v1"]))
    return [*chain, ClickstreamNormaliser()]


async def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run for development")
    parser.add_argument("--n", type=int, help="records (default 20000, quick 3000)")
    parser.add_argument("--repeats", type=int, help="repeats, median reported (default 5, quick 3)")
    args = parser.parse_args()
    n = args.n or (3000 if args.quick else 20000)
    repeats = args.repeats or (3 if args.quick else 5)

    with Broker() as broker:
        bootstrap = broker.bootstrap
        items = click_values(n, random.Random(7))
        topic = f"bench.clickstream.masking.{uuid.uuid4().hex[:6]}"
        await preproduce(bootstrap, topic, items, partitions=1)
        reader = Reader(bootstrap, topic, n)
        await reader.start()
        prebuilt = [SourceRecord(topic, 0, i, BASE_MS, key, value) for i, (key, value) in enumerate(items)]
        tuning.tune_gc()
        await reader.floor()  # warm-up
        runs: dict[str, list[float]] = {k: [] for k in ("floor", "plain", "masked", "floor_cpu", "masked_cpu",
                                                         "plain_inproc", "masked_inproc")}
        failed = 0
        for _ in range(repeats):
            rate, cpu = await reader.floor()
            runs["floor"].append(rate)
            runs["floor_cpu"].append(cpu)
            rate, _, _ = await reader.pipeline(stages(topic, masked=False))
            runs["plain"].append(rate)
            rate, cpu, failed = await reader.pipeline(stages(topic, masked=True))
            runs["masked"].append(rate)
            runs["masked_cpu"].append(cpu)
            for variant in ("plain", "masked"):
                parts = stages(topic, masked=variant == "masked")
                chain = Chain(parts[0], parts[1:])
                t0 = time.perf_counter()
                for start in range(0, n, 1000):
                    chain.run(prebuilt[start:start + 1000], [])
                runs[f"{variant}_inproc"].append(n / (time.perf_counter() - t0))
        await reader.stop()

        med = {k: statistics.median(v) for k, v in runs.items()}
        figures = {"floor_eps": round(med["floor"]), "unmasked_eps": round(med["plain"]),
                   "masked_eps": round(med["masked"]), "unmasked_inprocess_eps": round(med["plain_inproc"]),
                   "masked_inprocess_eps": round(med["masked_inproc"]), "masked_failures": failed,
                   "masking_vs_floor_cpu": round(med["masked_cpu"] / med["floor_cpu"], 3),
                   "mask_us_per_event": round((1 / med["masked_inproc"] - 1 / med["plain_inproc"]) * 1e6, 2)}
        ratios = {"masking_vs_floor": round(med["masked"] / med["floor"], 3),
                  "unmasked_vs_floor": round(med["plain"] / med["floor"], 3)}
        print(f"masking bench: {n} clickstream records, {repeats} repeats, broker {bootstrap}, "
              f"{eventloop.loop_name()} loop; medians")
        print(f"{'run':<34}{'ev/s':>12}{'in-process ev/s':>18}{'vs floor':>10}")
        print(f"{'floor (orjson.loads)':<34}{med['floor']:>12,.0f}{'':>18}{1:>10.2f}")
        print(f"{'decode+validate+normalise':<34}{med['plain']:>12,.0f}{med['plain_inproc']:>18,.0f}"
              f"{ratios['unmasked_vs_floor']:>10.2f}")
        print(f"{'decode+validate+MASK+normalise':<34}{med['masked']:>12,.0f}{med['masked_inproc']:>18,.0f}"
              f"{ratios['masking_vs_floor']:>10.2f}")
        print(f"masking costs {figures['mask_us_per_event']} us per event in process (5 fields); "
              f"cpu ratio {figures['masking_vs_floor_cpu']}")
        verdict = "passes" if ratios["masking_vs_floor"] >= FLOOR_RATIO else "is BELOW"
        print(f"masking_vs_floor {verdict} the floor {FLOOR_RATIO}")
        print(orjson.dumps({"bench": "masking", "figures": figures, "ratios": ratios}).decode())
        return 0


if __name__ == "__main__":
    sys.exit(eventloop.run(main()))
