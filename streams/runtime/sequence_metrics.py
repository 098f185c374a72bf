"""eventweir_sequence_records_total, from the outcome counts the sequence stages keep."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

from processors.enrich.sequence import SequenceGaps
from streams import metrics


class SequenceRecords:
    def __init__(self) -> None:
        self._exported: dict[tuple[str, str], int] = {}

    def export(self, pipeline: Any) -> None:
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for chain in getattr(pipeline, "chains", {}).values():
            for stage in chain.stages:
                if isinstance(stage, SequenceGaps):
                    for outcome, count in stage.counts.items():
                        totals[(stage.name, outcome)] += count
        for labels, total in totals.items():
            new = total - self._exported.get(labels, 0)
            if new > 0:
                metrics.SEQUENCE_RECORDS.labels(*labels).inc(new)
                self._exported[labels] = total
