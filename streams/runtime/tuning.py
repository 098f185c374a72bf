"""Process settings for batch processing, applied once a worker has started: the garbage
collector's thresholds and glibc's memory trimming. Both trade a little resident memory for
not paying per-batch costs that grow with the batch (figures: tests/bench/results/NOTES.md)."""
from __future__ import annotations

import ctypes
import ctypes.util
import gc


def tune_gc() -> None:
    """Garbage-collector settings for batch processing, applied once start-up is done.

    Compiled rules, validators and tables live for the whole run: keep them out of every GC pass.
    A batch allocates tens of thousands of short-lived objects (parsed JSON); with the default
    gen-0 threshold of 700 the collector runs dozens of times per batch. A higher threshold
    collects as often per batch as the default does per event.

    The threshold counts allocations net of frees, so it must sit above the objects the worker
    keeps alive in normal operation: deliveries waiting for their acks (with their records and
    target items) are young objects, up to runtime.max_in_flight_total of them. Below that every
    gen-0 pass walks the whole in-flight set and finds nothing (acks free it by refcount). Above
    it, a pass runs only when objects accumulate (cyclic garbage, growing state), which is what
    it is for.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(300_000, 20, 100)


MALLOC_KEEP_BYTES = 256 << 20


def tune_malloc() -> bool:
    """Keep freed memory for reuse instead of handing it back to the kernel (glibc only).

    Produce requests and fetch responses are megabytes each. glibc serves such blocks with fresh
    mmap()s, or trims the freed heap top back to the kernel, so every request's buffers are new
    pages: a page fault and a zeroed page per 4 KB, several times per produced byte (aiokafka
    copies a request as it encodes it). Freed blocks are kept up to MALLOC_KEEP_BYTES; a worker's memory
    settles at its peak batch working set instead of going up and down with every request.
    Returns False where there is no glibc (musl, macOS): nothing changes there.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    # 32 MB is glibc's largest mmap threshold: blocks up to it come from the reusable heap
    return bool(mallopt(m_trim_threshold, MALLOC_KEEP_BYTES)) and bool(mallopt(m_mmap_threshold, 32 << 20))
