"""Produce requests encoded in one join (streams/kafka/fastpath/produce_request.py) must be byte for byte what
aiokafka's own schema encodes, for every request version and any topics, partitions and batches
(tests/integration/test_produce_request.py delivers through them to the broker)."""
from aiokafka import AIOKafkaProducer
from aiokafka.protocol.produce import ProduceRequest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.kafka.fastpath import produce_request

topics = st.lists(st.tuples(st.text(min_size=1, max_size=20),
                            st.lists(st.tuples(st.integers(0, 2**31 - 1), st.binary(max_size=64)), max_size=4)),
                  max_size=4)


@settings(max_examples=200, deadline=None)
@given(topics=topics, acks=st.sampled_from([-1, 0, 1]), timeout=st.integers(0, 2**31 - 1),
       transactional_id=st.none() | st.text(max_size=10))
def test_every_version_encodes_as_aiokafka_does(topics, acks, timeout, transactional_id):
    _, one_copy, _ = produce_request._CLASSES
    for version in ProduceRequest._CLASSES:
        tid = transactional_id if version.API_VERSION >= 3 else None
        ours = one_copy(tid, acks, timeout, topics).build(version)
        theirs = ProduceRequest(tid, acks, timeout, topics).build(version)
        assert type(ours).API_VERSION == version.API_VERSION
        assert ours.encode() == theirs.encode()


async def test_install_takes_over_the_producers_requests_only_when_encodings_agree(monkeypatch):
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")  # never started
    assert produce_request.install(producer)
    assert producer._sender._send_produce_req.__func__ is produce_request._send_produce_req
    other = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1")
    monkeypatch.setattr(produce_request, "encodes_alike", lambda: False)  # an aiokafka with another layout
    assert not produce_request.install(other)
    assert "_send_produce_req" not in vars(other._sender)

