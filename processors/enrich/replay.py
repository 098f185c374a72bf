"""Which records a stateful stage has already applied, so a replay neither counts nor emits twice.

A stage keeping state in a changelog writes, with each record's changes, the offset of the last
record it applied on the partition. After a crash the changelog may be ahead of the committed
offsets: records at or below that offset are read again, and must not be applied again. Several
events may share one record (other stages' alerts or results made from it): each of them counts
once, so the guard also remembers, per partition, the events this instance applied at the last
offset. A stage re-emits what a replayed record emitted (same ids) once per record, not once per
event sharing it (`first_replay`). Used by the windows and sequence stages.
"""
from __future__ import annotations

from processors.core import Event


class ReplayGuard:
    def __init__(self) -> None:
        # per partition: the offset this instance applied last and the events (by id) it applied
        # at that offset, and the replayed offset whose outputs were emitted again
        self._live: dict[int, tuple[int, set[int]]] = {}
        self._replayed: dict[int, int] = {}

    def forget(self, partition: int) -> None:
        """The partition's state was restored or dropped: what this instance applied is unknown."""
        self._live.pop(partition, None)
        self._replayed.pop(partition, None)

    def applied(self, event: Event, applied_offset: int) -> bool:
        """True when `event` is already in the state, whose last applied offset is `applied_offset`:
        read again after a crash, or re-run after a failed batch (the same event object). Otherwise
        the event is noted as applied from now on, and False."""
        partition, offset = event.record.partition, event.record.offset
        live = self._live.get(partition)
        if offset < applied_offset or (offset == applied_offset and (live is None or live[0] != offset
                                                                     or id(event) in live[1])):
            return True
        if live is not None and live[0] == offset:
            live[1].add(id(event))
        else:
            self._live[partition] = (offset, {id(event)})
        return False

    def note(self, partition: int, offset: int, event_ids: list[int]) -> None:
        """What `applied` records when it answers False, for a caller that knew the answer already
        (the record is past the applied offset): the events `event_ids` at `offset` are applied."""
        live = self._live.get(partition)
        if live is not None and live[0] == offset:
            live[1].update(event_ids)
        else:
            self._live[partition] = (offset, set(event_ids))

    def first_replay(self, partition: int, offset: int) -> bool:
        """True the first time a replayed `offset` comes: emit its outputs again then only."""
        if self._replayed.get(partition) == offset:
            return False
        self._replayed[partition] = offset
        return True
