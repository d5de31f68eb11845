"""Baseline acker: one single-threaded consumer on the three topics; a shelve file records
which topics each id has reached (and when); once an id has reached all three, one ack goes
to the ack topic."""
import argparse
import json
import shelve

from confluent_kafka import Consumer, Producer

from common import ACK_TOPIC, TOPICS, consumer_config, log, now_ms, report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--state", required=True)
    parser.add_argument("--expect", type=int, required=True, help="acks to send before exiting")
    args = parser.parse_args()
    consumer = Consumer(consumer_config(args.bootstrap, "baseline-acker"))
    consumer.subscribe(TOPICS, on_assign=lambda c, p: log(f"acker: assigned {len(p)} partitions"))
    producer = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
    acks = 0
    first = None
    with shelve.open(args.state) as state:
        while acks < args.expect:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                log(f"acker: {msg.error()}")
                continue
            if first is None:
                first = now_ms()
            key = msg.key().decode()
            entry = state.get(key, {"topics": {}, "acked": False})
            entry["topics"][msg.topic()] = msg.timestamp()[1]
            if not entry["acked"] and all(t in entry["topics"] for t in TOPICS):
                ack = {"id": int(key), "latest_event_ms": max(entry["topics"].values()), "ack_ms": now_ms()}
                producer.produce(ACK_TOPIC, key=key, value=json.dumps(ack), partition=msg.partition())
                producer.poll(0)
                entry["acked"] = True
                acks += 1
            state[key] = entry
        producer.flush()
    consumer.close()
    report(stage="acker", first_ms=first, done_ms=now_ms(), acks=acks)


if __name__ == "__main__":
    main()
