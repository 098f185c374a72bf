"""eventweir_sequence_records_total, from the outcome counts the sequence stages keep."""
from __future__ import annotations

from typing import Any

from processors.enrich.sequence import SequenceGaps
from streams import metrics
from streams.runtime.dispatch import StageCounts


class SequenceRecords(StageCounts):
    counter = metrics.SEQUENCE_RECORDS
    stage_type = SequenceGaps

    @staticmethod
    def counts(stage: Any) -> dict[str, int]:
        return stage.counts
