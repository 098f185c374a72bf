"""engine="auto": time the engines on the traffic itself, then keep the faster, for good.

Which engine is faster depends on the traffic: the index engine when events are candidates for
few clauses (routing by type and id), the bit-mask engine when they are candidates for many
(rules on most fields, anything-buts). Both give the same answers, so the trial can run on live
events.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

from .writer import CodeWriter

Matching = Callable[[Any], list[str]]
# (engine name, its matching function, the writer whose namespace that function runs in)
Contender = tuple[str, Matching, CodeWriter]


def engine_trial(contenders: Sequence[Contender], decided: Callable[[str, dict[str, float]], None],
                 every: int, warmup: int, timed: int) -> Matching:
    """A `matching` function that, on one event in `every`, runs both contenders (in turns first,
    for fairness to caches), and after `timed` timed samples (past `warmup` untimed ones, which
    fill generated checks and memos) becomes the one with the lower median time per event:
    its code is swapped in, so callers holding the function get the winner with no extra call.
    Samples spread over `every * (warmup + timed)` events, so that traffic that comes in runs of
    one kind (a batch per partition) is judged whole. Until then the first contender answers.
    `decided(name, medians_ns)` is told the winner once."""
    (first_name, first, first_writer), (second_name, second, second_writer) = contenders
    namespace: dict[str, Any] = {}
    writer = CodeWriter("trial", namespace)
    writer.define("def matching(ev):\n    return trial(ev)\n")
    matching: Matching = namespace.pop("matching")
    times: tuple[list[int], list[int]] = ([], [])
    clock = time.perf_counter_ns
    warm = warmup * every
    last = warm + timed * every
    count = [0]
    pair = (first, second)

    def trial(ev: Any) -> list[str]:
        n = count[0] = count[0] + 1
        if n % every:
            return first(ev)
        if n <= warm:
            second(ev)
            return first(ev)
        names: list[str] = []
        for side in ((0, 1) if n & every else (1, 0)):
            start = clock()
            names = pair[side](ev)
            times[side].append(clock() - start)
        if n >= last:
            medians = tuple(statistics.median(t) for t in times)
            best = 0 if medians[0] <= medians[1] else 1
            winner, winner_writer = pair[best], (first_writer, second_writer)[best]
            winner_writer.mirror_into(namespace)  # the winner's globals, kept in step from now on
            matching.__code__ = winner.__code__
            decided((first_name, second_name)[best], {first_name: medians[0], second_name: medians[1]})
        return names
    namespace["trial"] = trial
    return matching
