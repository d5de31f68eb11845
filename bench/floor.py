"""The broker's latency floor with Genetika's own topology, built from plain librdkafka clients
(confluent-kafka), so that the paced ack delay can be compared like for like: one producer sends
keyed messages evenly to topic1..3 (RATE per topic); two consumer groups read all three topics at
once, `floor-db` (reads and drops, as the DB stage's fetches load the broker) and `floor-acker`
(notes which topics each key reached and, once all three, produces an ack to `ack`). The ack
delay is the ack's create time minus the latest of its key's three message timestamps, as
`genetika report` measures it. Prints one JSON line: count/expected and p50/p90/p99 (ms).
Nothing here is Genetika."""
import argparse
import json
import threading
import time

from confluent_kafka import Consumer, Producer

from transit import PRODUCER, TOPICS, percentile

CLIENT = {"session.timeout.ms": 6000}


def consumer(bootstrap, group):
    c = Consumer(dict(CLIENT, **{"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "latest",
                                 "enable.auto.commit": False}))
    assigned = threading.Event()
    c.subscribe(TOPICS, on_assign=lambda _c, _p: assigned.set())
    while not assigned.is_set():
        c.poll(0.1)
    return c


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--rate", type=float, default=1000, help="messages per second per topic")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    keys = int(args.rate * args.seconds)
    db, acker = consumer(args.bootstrap, "floor-db"), consumer(args.bootstrap, "floor-acker")
    time.sleep(1)  # positions resolved before the first message goes out
    delays, consumed = [], [0]
    done = threading.Event()

    def read_db():
        while not done.is_set():
            msg = db.poll(0.1)
            if msg is not None and not msg.error():
                consumed[0] += 1

    def read_acker():
        acks = Producer({"bootstrap.servers": args.bootstrap, **PRODUCER})
        seen, latest = {}, {}
        while len(delays) < keys and not done.is_set():
            msg = acker.poll(0.1)
            acks.poll(0)
            if msg is None or msg.error():
                continue
            key = msg.key()
            seen[key] = seen.get(key, 0) | (1 << TOPICS.index(msg.topic()))
            latest[key] = max(latest.get(key, 0), msg.timestamp()[1])
            if seen[key] == 0b111:
                now = int(time.time() * 1000)
                acks.produce("ack", key=key, value=b'{"ack":true}', timestamp=now)
                delays.append(now - latest.pop(key))
        acks.flush()

    def produce():
        producer = Producer({"bootstrap.servers": args.bootstrap, **PRODUCER})
        value = b'{"id":0,"age":38,"sex":"M","weight_kg":78.6,"bmi":null,"diagnosis":"MDD","phq9":null,"enrolled_on":"2024-11-01"}'
        start = time.monotonic()
        for n in range(keys):
            for topic in TOPICS:
                producer.produce(topic, key=str(n), value=value)
            producer.poll(0)
            ahead = start + (n + 1) / args.rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        producer.flush()

    threads = [threading.Thread(target=f) for f in (read_db, read_acker)]
    for t in threads:
        t.start()
    sender = threading.Thread(target=produce)
    sender.start()
    sender.join()
    deadline = time.monotonic() + 30
    while len(delays) < keys and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    for t in threads:
        t.join()
    db.close()
    acker.close()
    print(json.dumps({"count": len(delays), "expected": keys, "db_consumed": consumed[0], "p50": percentile(delays, 50),
                      "p90": percentile(delays, 90), "p99": percentile(delays, 99)}))


if __name__ == "__main__":
    main()
