#!/usr/bin/env python3
"""make compose-smoke: the genetika service of compose.yaml, as far as a machine without a
Docker engine can run it. The binary is built the Dockerfile's way (release, static Swift
standard library); it runs with the environment and command that `docker-compose config`
renders for the genetika service (PARTITIONS=4), with /app mapped to a work directory and
kafka:19092 to a local Tansu broker whose topics are created as kafka-init would. Then:

  1. the stack's first start: the seed files written and acked, `/health` 200;
  2. `docker compose stop`: SIGTERM, and genetika exits 0 within stop_grace_period;
  3. `down` + `up` with Kafka's data kept (its log is on a volume now): genetika restarts on
     its kept state, and no id is acked twice;
  4. `down` + `up` with a broker that lost its data (the old compose.yaml's behaviour): the
     kept state refers to topics that are gone; genetika notices and completes anyway.

    scripts/compose_smoke.py GENETIKA_BINARY
"""
import json
import os
import shutil
import signal
import sys
import tempfile
import time

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from faults import (ROOT, Broker, Failed, Run, check, free_port, http_get, metric, report, subprocess,  # noqa: E402
                    wait_for, RUNS, TANSU)

PARTITIONS = "4"


def compose_service():
    result = subprocess.run(["docker-compose", "-f", os.path.join(ROOT, "compose.yaml"), "config"], capture_output=True,
                            text=True, check=True, env={**os.environ, "PARTITIONS": PARTITIONS})
    return yaml.safe_load(result.stdout)["services"]["genetika"]


def seconds(text):
    text = str(text)
    return int(text[:-1]) if text.endswith("s") else int(text)


def start(genetika, service, app, broker, log):
    env = {key: str(value) for key, value in service["environment"].items()}
    env["GENETIKA_BOOTSTRAP_SERVERS"] = env["GENETIKA_BOOTSTRAP_SERVERS"].replace("kafka:19092", broker.bootstrap)
    env["GENETIKA_DATABASE_URL"] = env["GENETIKA_DATABASE_URL"].replace("/app/", app + "/")
    env["GENETIKA_OBSERVABILITY_PORT"] = str(free_port())  # compose maps 9464; here any free port
    command = [arg.replace("/app/", app + "/") for arg in service["command"]]
    check(command[0] == "run", f"unexpected command {command}")
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        run = Run(genetika, command[command.index("--config") + 1], log, *command[3:])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    run.port = int(env["GENETIKA_OBSERVABILITY_PORT"])
    return run


def acks(run):
    status, text = http_get(run.port, "/metrics")
    return metric(text, "genetika_acks_total") if status == 200 else None


def create_topics(broker):
    for topic in ["topic1", "topic2", "topic3", "ack", "dead-letter", "incomplete"]:
        subprocess.run([TANSU, "topic", "create", "--broker", f"tcp://127.0.0.1:{broker.port}", "--partitions", PARTITIONS, topic],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    genetika = os.path.abspath(sys.argv[1])
    work = tempfile.mkdtemp(prefix="genetika-compose-")
    app = os.path.join(work, "app")
    os.makedirs(os.path.join(app, "state"))  # the genetika-state volume
    shutil.copy(os.path.join(ROOT, "config.json"), app)
    shutil.copytree(os.path.join(ROOT, "Fixtures"), os.path.join(app, "Fixtures"))
    service = compose_service()
    grace = seconds(service.get("stop_grace_period", "10s"))
    broker = None
    try:
        broker = Broker(work, storage="memory")  # creates 3-partition topics: replace them
        broker.kill()
        broker.start()
        create_topics(broker)  # what kafka-init does with PARTITIONS=4

        run = start(genetika, service, app, broker, os.path.join(work, "up1.log"))
        wait_for(lambda: acks(run) == 50, 120, "50 acks on the first start")
        check(http_get(run.port, "/health")[0] == 200, "/health is not 200 on a running stack")
        check("4 partitions" not in run.text() or "expects" not in run.text(), "partition count refused")
        began = time.monotonic()
        run.process.send_signal(signal.SIGTERM)
        code = run.wait(grace + 5)
        stopped = time.monotonic() - began
        check(code == 0 and stopped < grace, f"SIGTERM: exit {code} after {stopped:.1f} s (stop_grace_period {grace} s)")
        print(f"[compose-smoke] up (PARTITIONS={PARTITIONS}): 50 rows written and acked; stop: exit 0 in {stopped:.1f} s")

        config_path = os.path.join(app, "config.json")
        run = start(genetika, service, app, broker, os.path.join(work, "up2.log"))
        wait_for(lambda: "producer finished" in run.text(), 60, "the producer to resend the files after up")

        def consumed():
            status, text = http_get(run.port, "/metrics")
            return (metric(text, "genetika_events_consumed_total") or 0) if status == 200 else 0
        # Both consuming stages have read the 150 resent events: any second ack would be out.
        wait_for(lambda: consumed() >= 300, 60, "the DB stage and the acker to read the resent events")
        run.process.send_signal(signal.SIGTERM)
        check(run.wait(grace) == 0, "the second start did not stop cleanly")
        os.environ["GENETIKA_BOOTSTRAP_SERVERS"] = broker.bootstrap
        summary = report(genetika, config_path, os.path.join(work, "report2"))
        check(summary["acks"] == 50 and not summary["duplicate_acks"],
              f"down/up with Kafka's data kept: {summary['acks']} acks, duplicates {summary['duplicate_acks'][:5]}")
        print("[compose-smoke] down/up with the broker's data kept: the files were sent again, still 50 acks, none twice")

        broker.kill()
        broker.start()  # empty, as the old compose.yaml's Kafka after `down`
        create_topics(broker)
        run = start(genetika, service, app, broker, os.path.join(work, "up3.log"))
        wait_for(lambda: acks(run) == 50, 180, "50 acks after up on a broker that lost its data")
        run.process.send_signal(signal.SIGTERM)
        check(run.wait(grace) == 0, "the third start did not stop cleanly")
        summary = report(genetika, config_path, os.path.join(work, "report3"))
        check(summary["acks"] == 50 and summary["acked_ids"] == 50 and not summary["missing_ack"],
              f"down/up on an empty broker: {summary['acks']} acks, missing {summary['missing_ack'][:5]}")
        check("recreated" in run.text(), "genetika did not say that the topics were recreated")
        print("[compose-smoke] down/up on a broker that lost its data: detected, 50 rows and 50 acks again")
    except Failed as error:
        print(f"[compose-smoke] FAIL: {error}\n[compose-smoke]   work directory kept: {work}", file=sys.stderr)
        sys.exit(1)
    finally:
        for run in RUNS:
            run.kill()
        if broker:
            broker.kill()
    shutil.rmtree(work, ignore_errors=True)
    print("[compose-smoke] passed")


if __name__ == "__main__":
    main()
