#!/usr/bin/env python3
"""The failover part of `make bench`: 3 members (db + acker) on 12 partitions share one broker
and one PostgreSQL. After 3 x N rows have been processed, a paced stream of new ids runs, one
member is SIGKILLed, and for every partition it held this measures
  - first ack: the time from the kill until the partition produces an ack again, and
  - caught up: until an ack on it is for an event created after the kill and within a second
    of that event (its backlog drained: the lag is back to zero).
The failover time is the largest "caught up" over the dead member's partitions. Run for each
N given; prints a markdown section (and writes it into docs/benchmarks.md with --write-docs).
Targets: at most session timeout + 5 s, and the largest N at most 1.25x the smallest.

Needs confluent-kafka (bench.sh runs it with the bench venv's Python)."""
import argparse
import json
import os
import pathlib
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
from genetika_cluster import Broker, Postgres, free_port, wait_for  # noqa: E402
from genetika_cluster.xlsx import write_xlsx  # noqa: E402

PARTITIONS = 12
SESSION_MS = 6000


def log(text):
    print(f"[failover] {text}", flush=True)


def config(work, name, broker, pg, files, rate=0):
    base = json.loads((ROOT / "config.json").read_text())
    base["kafka"]["bootstrapServers"] = broker.bootstrap
    base["kafka"]["properties"]["session.timeout.ms"] = str(SESSION_MS)
    # Kafka's advice: a heartbeat at most a third of the session timeout (librdkafka's default,
    # 3 s, is half of 6 s), so that the surviving members learn of the rebalance sooner.
    base["kafka"]["properties"]["heartbeat.interval.ms"] = str(SESSION_MS // 3)
    base["topics"]["partitions"] = PARTITIONS
    base["topics"]["create"] = False
    for source, path in zip(base["sources"], files):
        source["file"] = str(path)
    base["database"]["url"] = pg.url
    base["stateDirectory"] = str(work / f"{name}-state")
    base["observability"]["port"] = 0
    if rate:
        base["stages"]["producer"]["ratePerSecond"] = rate
    path = work / f"{name}.json"
    path.write_text(json.dumps(base, indent=2))
    return path


def stream_files(work, first, count):
    """Seed-shaped sheets with ids first..first+count-1 and only the id filled in (the other
    columns are nullable): new ids for the paced stream."""
    base = json.loads((ROOT / "config.json").read_text())
    paths = []
    for number, source in enumerate(base["sources"], 1):
        header = [c.get("header", c["name"]) for c in source["columns"]]
        rows = [header] + [[i] + [None] * (len(header) - 1) for i in range(first, first + count)]
        path = work / f"stream{number}.xlsx"
        write_xlsx(str(path), source["sheet"], rows)
        paths.append(path)
    return paths


class AckWatcher(threading.Thread):
    """Reads the ack topic (every partition, from the start) and keeps each ack's partition,
    time and delay."""

    def __init__(self, bootstrap):
        super().__init__(daemon=True)
        from confluent_kafka import Consumer, TopicPartition
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "failover-watch", "enable.auto.commit": False,
                                  "fetch.wait.max.ms": 20})
        self.consumer.assign([TopicPartition("ack", p, 0) for p in range(PARTITIONS)])
        self.acks = []   # (partition, ack_ms, latest_event_ms)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for message in self.consumer.consume(1000, 0.2):
                if message.error() or message.value() is None:
                    continue
                value = json.loads(message.value())
                self.acks.append((message.partition(), value["ack_ms"], value["latest_event_ms"]))
        self.consumer.close()


def held_partitions(log_path, stage):
    lines = [line for line in open(log_path, errors="replace") if f"{stage} assigned" in line]
    return {int(p) for p in re.findall(r"topic1\[(\d+)\]", lines[-1])} if lines else set()


def acked_count(pg):
    return int(pg.query("SELECT count(*) FROM genetika_acker_ids WHERE acked")[0][0])


def run_once(genetika, work, rows):
    shutil.rmtree(work, ignore_errors=True)   # a run starts from nothing (a second `make bench` too)
    work.mkdir(parents=True, exist_ok=True)
    broker = Broker(str(work), partitions=PARTITIONS)
    pg = Postgres(str(work))
    members = []
    try:
        data = work / "data"
        if not (data / "sim_file3.xlsx").exists():
            subprocess.run([str(pathlib.Path(genetika).parent / "genetika-dataset"), "--rows", str(rows), "--out", str(data)],
                           check=True, stdout=subprocess.DEVNULL)
        files = [data / f"sim_file{i}.xlsx" for i in (1, 2, 3)]
        for name in ("m1", "m2", "m3"):
            path = config(work, name, broker, pg, files)
            out = open(work / f"{name}.log", "w")
            members.append((name, subprocess.Popen([genetika, "run", "--config", str(path), "--stages", "db,acker"], stdout=out, stderr=out)))
        wait_for(lambda: all(held_partitions(work / f"{n}.log", "acker") for n, _ in members), 120, "every member to hold partitions")
        log(f"3 x {rows:,} rows through 3 members")
        loaded = time.monotonic()
        producer = subprocess.run([genetika, "run", "--config", str(config(work, "producer", broker, pg, files)), "--stages", "producer",
                                   "--exit-when-done"], capture_output=True, text=True, timeout=3600)
        if producer.returncode != 0:
            raise RuntimeError(f"producer failed: {producer.stderr[-800:]}")
        wait_for(lambda: acked_count(pg) >= rows, 3600, f"{rows} acks", interval=1)
        log(f"  processed in {time.monotonic() - loaded:.0f} s; starting a paced stream of new ids")
        watcher = AckWatcher(broker.bootstrap)
        watcher.start()
        rate, seconds = 300, 60
        stream = stream_files(work, rows + 1, rate * seconds)
        streamer = subprocess.Popen([genetika, "run", "--config", str(config(work, "stream", broker, pg, stream, rate=rate)),
                                     "--stages", "producer", "--exit-when-done"], stdout=subprocess.DEVNULL, stderr=open(work / "stream.log", "w"))
        time.sleep(15)
        victim_name, victim = members[0]
        held = held_partitions(work / f"{victim_name}.log", "acker") | held_partitions(work / f"{victim_name}.log", "db")
        kill_ms = time.time_ns() // 1_000_000
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        log(f"  killed {victim_name}, which held partitions {sorted(held)}")
        first, caught = {}, {}

        def recovered():
            for partition, ack_ms, latest in list(watcher.acks):
                if partition in held and ack_ms > kill_ms:
                    first.setdefault(partition, ack_ms - kill_ms)
                    if latest > kill_ms and ack_ms - latest < 1000:
                        caught.setdefault(partition, ack_ms - kill_ms)
            return len(caught) == len(held)

        wait_for(recovered, 120, "every partition of the killed member to ack fresh events again", interval=0.2)
        streamer.wait(300)
        watcher.stop.set()
        return {"rows": rows, "partitions": sorted(held), "first_ack_ms": max(first.values()), "caught_up_ms": max(caught.values()),
                "per_partition_caught_up_ms": {str(p): caught[p] for p in sorted(caught)}}
    finally:
        for _, process in members:
            if process.poll() is None:
                process.kill()
        broker.kill()
        pg.stop()


def render(results, session_ms):
    target = session_ms + 5000
    lines = ["<!-- bench-failover:start -->", "### Failover (3 members, 12 partitions, one SIGKILL)", "",
             f"Session timeout {session_ms / 1000:.0f} s, heartbeat {session_ms // 3 / 1000:.0f} s; shared acker state in PostgreSQL; a paced stream of new ids "
             "(300 events/s per topic) runs while one member is killed. Times from the kill, largest over the killed "
             "member's partitions.", "",
             "| history before the kill | partitions moved | first ack again | caught up (lag zero) | target |",
             "|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| 3 × {r['rows']:,} rows | {len(r['partitions'])} | {r['first_ack_ms'] / 1000:.1f} s | "
                     f"{r['caught_up_ms'] / 1000:.1f} s | ≤ {target / 1000:.0f} s: {'met' if r['caught_up_ms'] <= target else 'missed'} |")
    if len(results) > 1:
        ratio = results[-1]["caught_up_ms"] / results[0]["caught_up_ms"]
        lines += ["", f"Largest history against smallest: {ratio:.2f}× (target ≤ 1.25×: {'met' if ratio <= 1.25 else 'missed'})."]
    lines.append("<!-- bench-failover:end -->")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genetika", required=True)
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--work", type=pathlib.Path, default=ROOT / ".bench/failover")
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    results = []
    for rows in args.rows:
        result = run_once(args.genetika, args.work / str(rows), rows)
        log(f"  first ack {result['first_ack_ms']} ms, caught up {result['caught_up_ms']} ms")
        results.append(result)
    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    text = render(results, SESSION_MS)
    print(text)
    if args.write_docs:
        path = ROOT / "docs/benchmarks.md"
        doc = path.read_text()
        pattern = re.compile(r"<!-- bench-failover:start -->.*?<!-- bench-failover:end -->", re.S)
        doc = pattern.sub(lambda _: text, doc) if pattern.search(doc) else doc.rstrip() + "\n\n" + text + "\n"
        path.write_text(doc)


if __name__ == "__main__":
    main()
