"""After tune_malloc, megabyte buffers (produce requests, fetch responses) reuse freed memory
instead of faulting in fresh pages each time."""
import platform
import resource

import pytest

from streams.runtime.tuning import tune_malloc


def faults_per_request() -> float:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        body = bytes(3 << 20)  # a request body, then the copies aiokafka's connection makes
        message = b"header" + body
        framed = b"size" + message
        del body, message, framed
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt")
def test_megabyte_buffers_stop_faulting_in_pages():
    assert tune_malloc()
    faults_per_request()  # the first round grows the heap once
    assert faults_per_request() < 20  # 3 buffers of 3 MB in fresh pages: ~2,300 faults each round
