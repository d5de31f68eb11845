"""The broker's own latency floor at the paced regime's rate: one confluent-kafka producer
sends keyed messages evenly to topic1..3 (RATE per topic) and one consumer, in the group
`transit` on the same topics, notes when each arrives. Prints one JSON line with the
transit time (arrival − the message's create timestamp, ms) as count/p50/p90/p99.
Nothing here is Genetika: it shows what any librdkafka client sees on this broker."""
import argparse
import json
import threading
import time

from confluent_kafka import Consumer, Producer

TOPICS = ["topic1", "topic2", "topic3"]
# Genetika's producers when paced: librdkafka's 5 ms linger, idempotent, acks from all replicas
# (bench/floor.py uses the same).
PRODUCER = {"linger.ms": 5, "acks": "all", "enable.idempotence": True}


def percentile(values, p):
    values = sorted(values)
    if not values:
        return None
    rank = p / 100 * (len(values) - 1)
    lower = int(rank)
    upper = min(lower + 1, len(values) - 1)
    return values[lower] + (values[upper] - values[lower]) * (rank - lower)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--rate", type=float, default=1000, help="messages per second per topic")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    total = int(args.rate * args.seconds) * len(TOPICS)
    consumer = Consumer({"bootstrap.servers": args.bootstrap, "group.id": "transit", "auto.offset.reset": "latest",
                         "session.timeout.ms": 6000, "enable.auto.commit": False})
    assigned = threading.Event()
    consumer.subscribe(TOPICS, on_assign=lambda c, p: assigned.set())
    while not assigned.is_set():
        consumer.poll(0.1)
    time.sleep(1)  # positions resolved before the first message goes out
    transit = []

    def produce():
        producer = Producer({"bootstrap.servers": args.bootstrap, **PRODUCER})
        start = time.monotonic()
        for n in range(total // len(TOPICS)):
            for topic in TOPICS:
                producer.produce(topic, key=str(n), value=b"x" * 120)
            producer.poll(0)
            ahead = start + (n + 1) / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()

    sender = threading.Thread(target=produce)
    sender.start()
    deadline = time.monotonic() + args.seconds + 30
    while len(transit) < total and time.monotonic() < deadline:
        msg = consumer.poll(0.1)
        if msg is None or msg.error():
            continue
        transit.append(time.time() * 1000 - msg.timestamp()[1])
    sender.join()
    consumer.close()
    print(json.dumps({"count": len(transit), "expected": total, "p50": percentile(transit, 50),
                      "p90": percentile(transit, 90), "p99": percentile(transit, 99)}))


if __name__ == "__main__":
    main()
