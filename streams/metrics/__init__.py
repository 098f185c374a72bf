"""Every metric, declared once, every label bounded: the worker's here (worker.py), the waiting
room's in waitingroom.py. `from streams import metrics; metrics.RECORDS_IN` is the API."""
from streams.metrics.worker import *  # noqa: F403
