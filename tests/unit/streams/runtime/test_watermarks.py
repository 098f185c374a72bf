from streams.runtime.offsets import Watermarks

TP = ("t", 0)


def test_commit_waits_for_the_oldest_unacknowledged_batch():
    marks = Watermarks()
    first, second = marks.open(TP, 100), marks.open(TP, 200)
    first.add(2)
    second.add(1)
    first.release()
    second.release()
    second.done()  # the newer batch is acknowledged first
    assert marks.committable() == {}
    first.done()
    assert marks.committable() == {}  # one output of the first batch still outstanding
    first.done()
    assert marks.committable() == {TP: 200}


def test_a_failed_commit_is_offered_again_and_a_done_one_is_not():
    marks = Watermarks()
    ticket = marks.open(TP, 10)
    ticket.release()
    assert marks.committable() == {TP: 10}
    assert marks.committable() == {TP: 10}  # not marked committed yet: still offered
    marks.mark_committed({TP: 10})
    assert marks.committable() == {}


def test_drained_only_counts_the_partitions_asked_for():
    marks = Watermarks()
    busy = marks.open(("t", 1), 5)
    marks.open(("t", 2), 5).release()
    assert not marks.drained()
    assert marks.drained({("t", 2)})
    busy.release()
    assert marks.drained()
