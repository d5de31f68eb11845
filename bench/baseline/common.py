"""Shared bits of the baseline: the original Python design of the pipeline, kept as it was
(pandas/openpyxl, confluent-kafka, SQLAlchemy ORM, shelve) so that `make bench` can measure
Genetika against it on the same broker and files. Each process prints one JSON line of
timings (epoch milliseconds) on stdout when it ends."""
import json
import sys
import time

TOPICS = ["topic1", "topic2", "topic3"]
ACK_TOPIC = "ack"


def now_ms():
    return time.time_ns() // 1_000_000


def report(**fields):
    print(json.dumps(fields), flush=True)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def consumer_config(bootstrap, group):
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
    }
