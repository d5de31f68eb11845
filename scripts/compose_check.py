#!/usr/bin/env python3
"""make compose-check: compose.yaml must be valid for Docker Compose v1 and v2 syntax (as
docker-compose v1 renders it, with and without the postgres profile) and must keep the
properties a user's stack depends on. Each check names what breaks without it.

    scripts/compose_check.py            (needs docker-compose; no Docker engine)
"""
import os
import re
import subprocess
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def render(*args, env=None):
    result = subprocess.run(["docker-compose", "-f", os.path.join(ROOT, "compose.yaml"), *args, "config"],
                            capture_output=True, text=True, env={**os.environ, **(env or {})})
    if result.returncode != 0:
        print(result.stderr, file=sys.stderr)
        sys.exit(f"compose.yaml does not validate ({' '.join(args) or 'default'}): {result.stderr.strip()[:300]}")
    return yaml.safe_load(result.stdout)


def seconds(text):
    match = re.fullmatch(r"(\d+)(ms|s|m)?", str(text))
    value, unit = int(match.group(1)), match.group(2) or "s"
    return value / 1000 if unit == "ms" else value * 60 if unit == "m" else value


def main():
    default = render()
    with_postgres = render("--profile", "postgres")
    five = render(env={"PARTITIONS": "5"})
    services = default["services"]

    # (docker-compose v1 renders every service whatever the profile: check the profile itself.)
    check(with_postgres["services"].get("postgres", {}).get("profiles") == ["postgres"],
          "the postgres service must stay behind its profile (default runs use SQLite)")

    kafka = services["kafka"]
    log_dirs = kafka.get("environment", {}).get("KAFKA_LOG_DIRS")
    check(log_dirs, "kafka: KAFKA_LOG_DIRS is not set (apache/kafka then logs to /tmp in the container and `down` loses the topics)")
    mounts = [v for v in kafka.get("volumes", []) if isinstance(v, str) and v.split(":")[1] == log_dirs]
    check(mounts and mounts[0].split(":")[0] in default.get("volumes", {}),
          f"kafka: KAFKA_LOG_DIRS {log_dirs} is not on a named volume")
    check(kafka.get("environment", {}).get("CLUSTER_ID"), "kafka: CLUSTER_ID must be fixed so the kept log directory matches")

    genetika = services["genetika"]
    check(genetika.get("restart") in ("on-failure", "unless-stopped", "always"), "genetika: no restart policy")
    check("postgres" not in (genetika.get("depends_on") or {}),
          "genetika must not depend on postgres (it is behind a profile; genetika waits for the database itself)")
    command = genetika.get("command", [])
    stop_timeout = int(command[command.index("--stop-timeout") + 1]) if "--stop-timeout" in command else 15
    grace = seconds(genetika.get("stop_grace_period", "10s"))
    check(grace > stop_timeout, f"genetika: stop_grace_period {grace} s is not longer than --stop-timeout {stop_timeout} s")
    state_volumes = [v for v in genetika.get("volumes", []) if isinstance(v, str) and v.split(":")[1] == "/app/state"]
    check(state_volumes, "genetika: /app/state is not on a volume")

    for rendered, expected in ((default, "3"), (five, "5")):
        init = rendered["services"]["kafka-init"]["environment"]["PARTITIONS"]
        mine = rendered["services"]["genetika"]["environment"].get("GENETIKA_TOPIC_PARTITIONS")
        check(str(init) == expected and str(mine) == expected,
              f"PARTITIONS={expected}: kafka-init creates {init} partitions, genetika expects {mine}")

    postgres = with_postgres["services"]["postgres"]
    test = " ".join(postgres.get("healthcheck", {}).get("test", []))
    check("pg_isready" in test and re.search(r"-h\s+\S+", test),
          "postgres: the health check must ask over TCP (pg_isready -h …): the init server answers on the socket first")

    ignored = open(os.path.join(ROOT, ".dockerignore")).read().split()
    for entry in (".build", ".deps", ".bench", ".swiftpm", "state", ".git"):
        check(entry in ignored, f".dockerignore does not leave out {entry}")

    if failures:
        for failure in failures:
            print(f"[compose-check] FAIL: {failure}", file=sys.stderr)
        sys.exit(1)
    print("[compose-check] compose.yaml is valid (default and postgres profile) and keeps its guarantees")


if __name__ == "__main__":
    main()
