"""Baseline producer: each spreadsheet read whole with pandas (openpyxl engine), then one
thread per file sends every row as a JSON event keyed by its id, with one confluent-kafka
producer and delivery callbacks per thread, as the original did."""
import argparse
import json
import threading
import time

import pandas as pd
from confluent_kafka import Producer

from common import TOPICS, log, now_ms, report


def send_file(path, topic, bootstrap, rate, results, index):
    started = now_ms()
    frame = pd.read_excel(path, engine="openpyxl")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    failures = []

    def delivered(err, msg):
        if err is not None:
            failures.append(str(err))

    sent = 0
    began = time.monotonic()
    for record in frame.to_dict(orient="records"):
        event = {k: (None if pd.isna(v) else v.strftime("%Y-%m-%d") if hasattr(v, "strftime") else v)
                 for k, v in record.items()}
        producer.produce(topic, key=str(event["id"]), value=json.dumps(event, default=str), callback=delivered)
        producer.poll(0)
        sent += 1
        if rate:
            ahead = began + sent / rate - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
    producer.flush()
    results[index] = {"file": path, "rows": sent, "failures": len(failures), "started_ms": started, "done_ms": now_ms()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--rate", type=float, default=0, help="events per second per topic (0: flat out)")
    parser.add_argument("files", nargs=3)
    args = parser.parse_args()
    results = [None] * 3
    threads = [threading.Thread(target=send_file, args=(path, topic, args.bootstrap, args.rate, results, i))
               for i, (path, topic) in enumerate(zip(args.files, TOPICS))]
    started = now_ms()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    failures = sum(r["failures"] for r in results)
    if failures:
        log(f"producer: {failures} deliveries failed")
    report(stage="producer", started_ms=started, done_ms=max(r["done_ms"] for r in results),
           rows=sum(r["rows"] for r in results), failures=failures)


if __name__ == "__main__":
    main()
