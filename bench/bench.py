#!/usr/bin/env python3
"""make bench: Genetika's whole pipeline side by side with the original Python design
(bench/baseline) and with kcat (the raw produce + consume limit), on the same generated
spreadsheets, each against a fresh local broker, in one run. Prints the figures and the
ratios and writes them to docs/benchmarks.md. Targets are reported, never asserted.

Run through scripts/bench.sh, which installs what this needs first."""
import argparse
import contextlib
import datetime
import json
import statistics
import os
import pathlib
import platform
import re
import shutil
import socket
import subprocess
import sys
import threading
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOPICS = ["topic1", "topic2", "topic3"]
sys.path.insert(0, str(ROOT / "scripts"))
from genetika_cluster import Postgres  # noqa: E402


def log(text):
    print(f"[bench] {text}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def now_ms():
    return time.time_ns() // 1_000_000


class Broker:
    """A fresh broker (scripts/broker.sh) on its own port; `cpu_seconds` is the broker
    process's CPU time so far (Tansu only: the process runs here)."""

    def __init__(self, work, name):
        self.port = free_port()
        self.dir = work / f"broker-{name}"
        self.env = dict(os.environ, BROKER_PORT=str(self.port), BROKER_DIR=str(self.dir))
        self.env.setdefault("BROKER", "tansu")
        self.bootstrap = f"127.0.0.1:{self.port}"

    def __enter__(self):
        subprocess.run([str(ROOT / "scripts/broker.sh"), "start"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return self

    def __exit__(self, *exc):
        subprocess.run([str(ROOT / "scripts/broker.sh"), "stop"], env=self.env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cpu_seconds(self):
        pid_file = self.dir / "tansu.pid"
        if not pid_file.exists():
            return None
        try:
            fields = (pathlib.Path("/proc") / pid_file.read_text().strip() / "stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return None


class Timed:
    """A process run under /usr/bin/time: peak RSS (KB) and CPU seconds once it ends."""

    def __init__(self, args, work, name, env=None, stdout=None):
        self.stats = work / f"{name}.time"
        self.stderr_path = work / f"{name}.log"
        self.stderr = open(self.stderr_path, "w")
        self.lines = []
        self.process = subprocess.Popen(["/usr/bin/time", "-o", str(self.stats), "-f", "%M %U %S %e", *args],
                                        stdout=stdout if stdout is not None else subprocess.PIPE,
                                        stderr=self.stderr, env=env, text=True)
        if self.process.stdout:
            self.reader = threading.Thread(target=self._read, daemon=True)
            self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    def wait(self, timeout):
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise RuntimeError(f"{' '.join(self.process.args[5:8])}… did not finish within {timeout} s; see {self.stderr_path}")
        if self.process.stdout:
            self.reader.join()
        self.stderr.close()
        if code != 0:
            tail = self.stderr_path.read_text()[-3000:]
            raise RuntimeError(f"{self.process.args[5]} exited with {code}; log {self.stderr_path}:\n{tail}")
        rss, user, system, wall = self.stats.read_text().split()[-4:]
        self.rss_kb, self.cpu = int(rss), float(user) + float(system)
        return self

    def json_line(self):
        for line in reversed(self.lines):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"no JSON summary from {self.process.args[5]}")

    def wait_for_log(self, pattern, count, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(re.findall(pattern, self.stderr_path.read_text())) >= count:
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.process.args[5]} ended early: {self.stderr_path.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"timed out waiting for {pattern!r} in {self.stderr_path}")


def genetika_config(path, data, state, broker, database=None, **producer):
    config = json.loads((ROOT / "config.json").read_text())
    config["kafka"]["bootstrapServers"] = broker.bootstrap
    for source in config["sources"]:
        source["file"] = str(data / pathlib.Path(source["file"]).name)
    config["database"]["url"] = database or f"sqlite://{state}/genetika.db"
    config["stateDirectory"] = str(state)
    config["observability"]["port"] = free_port()
    config["stages"]["producer"].update(producer)
    path.write_text(json.dumps(config, indent=2))
    return path


def report(genetika, config, out):
    """Ack delay statistics from the broker's topics (`genetika report`)."""
    subprocess.run([genetika, "report", "--config", str(config), "--out", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    summary = json.loads((out / "summary.json").read_text())
    problems = {k: summary.get(k) for k in ("missing_ack", "duplicate_acks", "acks_before_latest_event") if summary.get(k)}
    if summary.get("missing_from_topic"):
        problems["missing_from_topic"] = summary["missing_from_topic"]
    if problems:
        raise RuntimeError(f"the report of {config} found problems: {json.dumps(problems)[:500]}")
    delay = summary.get("delay_ms") or {}
    return {"p50": delay.get("p50"), "p99": delay.get("p99"), "count": delay.get("count"),
            "acks": summary.get("acks"), "ids": summary.get("ids")}


class FreshPostgres:
    """A throwaway PostgreSQL cluster for one run (genetika_cluster.Postgres, default settings
    but for the port), removed afterwards; `cpu_seconds` is the whole server's CPU so far."""

    def __init__(self, work, name):
        self.dir = work / f"pg-{name}"

    def __enter__(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir.mkdir(parents=True)
        self.server = Postgres(str(self.dir))
        return self.server

    def __exit__(self, *exc):
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_genetika(args, work, data, rows, name, postgres=False, **producer):
    with Broker(work, name) as broker, (FreshPostgres(work, name) if postgres else contextlib.nullcontext()) as pg:
        state = work / f"{name}-state"
        shutil.rmtree(state, ignore_errors=True)
        config = genetika_config(work / f"{name}.json", data, state, broker, database=pg.url if pg else None, **producer)
        cpu0 = broker.cpu_seconds()
        pg_cpu0 = pg.cpu_seconds() if pg else None
        summary_path = work / f"{name}-summary.json"
        run = Timed([args.genetika, "run", "--config", str(config), "--exit-when-done", "--summary", str(summary_path)],
                    work, name, stdout=subprocess.DEVNULL).wait(args.timeout)
        broker_cpu = broker.cpu_seconds() - cpu0 if cpu0 is not None else None
        pg_cpu = pg.cpu_seconds() - pg_cpu0 if pg_cpu0 is not None else None
        s = json.loads(summary_path.read_text())
        total = 3 * rows
        if s["rows_written"] != total or s["acks"] != rows:
            raise RuntimeError(f"{name}: wrote {s['rows_written']} rows and {s['acks']} acks, expected {total} and {rows}")
        producer_span, db_span, acker_span = (s["stages"][k] for k in ("producer", "db", "acker"))
        # First row read → last ack or last row written, whichever is later.
        e2e = (max(acker_span["last_ms"], db_span["last_ms"]) - producer_span["first_ms"]) / 1000
        result = {
            "rows": total, "e2e_seconds": e2e, "e2e_rows_per_second": total / e2e,
            "producer_rows_per_second": producer_span["per_second"], "db_rows_per_second": db_span["per_second"],
            "acker_events_per_second": (3 * acker_span["per_second"]) if acker_span.get("per_second") else None,
            "peak_rss_mb": run.rss_kb / 1024, "cpu_seconds": run.cpu, "broker_cpu_seconds": broker_cpu,
            "delay": report(args.genetika, config, work / f"{name}-report"),
            "delay_split": s.get("ack_delay_split_ms"), "postgres_cpu_seconds": pg_cpu,
        }
        if pg:
            result["postgres_settings"] = pg.settings()
        if args.dump_events is not None and name == "genetika":
            dump_events(broker, args.dump_events)
        return result


def run_genetika_repeated(args, work, data, rows, name, postgres=False):
    """`run_genetika` `args.repeat` times (each run checked for exact counts): single runs on
    this two-core machine vary by ±15 %, so each figure is the median of its runs, taken figure by
    figure; `runs` keeps every run's rate, CPU and peak RSS for the table."""
    runs = [run_genetika(args, work, data, rows, name if i == 0 else f"{name}-{i + 1}", postgres=postgres) for i in range(args.repeat)]
    if len(runs) == 1:
        return runs[0]
    result = dict(runs[0])
    for key in ("e2e_seconds", "e2e_rows_per_second", "producer_rows_per_second", "db_rows_per_second",
                "acker_events_per_second", "peak_rss_mb", "cpu_seconds", "broker_cpu_seconds", "postgres_cpu_seconds"):
        values = [x[key] for x in runs if x.get(key) is not None]
        result[key] = statistics.median(values) if values else None
    result["delay"] = dict(runs[0]["delay"], p50=statistics.median(x["delay"]["p50"] for x in runs),
                           p99=statistics.median(x["delay"]["p99"] for x in runs))
    splits = [x.get("delay_split") or {} for x in runs]
    result["delay_split"] = {part: {q: statistics.median(s[part][q] for s in splits) for q in ("p50", "p99")}
                             for part in ("to_acker", "in_acker") if all(s.get(part) for s in splits)}
    result["runs"] = [{k: x.get(k) for k in ("e2e_rows_per_second", "cpu_seconds", "peak_rss_mb", "postgres_cpu_seconds")} for x in runs]
    return result


def dump_events(broker, directory):
    """The events Genetika produced, key<TAB>value per line per topic, for kcat to replay."""
    directory.mkdir(parents=True, exist_ok=True)
    for topic in TOPICS:
        with open(directory / f"{topic}.tsv", "w") as out:
            subprocess.run(["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-e", "-q",
                            "-f", "%k\t%s\n"], stdout=out, check=True, env=kcat_env())


def kcat_env():
    return dict(os.environ, LD_LIBRARY_PATH=str(ROOT / ".deps/librdkafka/shared"))


def run_kcat(args, work, events, rows):
    """Three kcat consumers (one per topic, from the beginning, exiting after `rows`), then
    three kcat producers replaying Genetika's events; timed from the producers' start to the
    last consumer's end."""
    with Broker(work, "kcat") as broker:
        env = kcat_env()
        consumers = [Timed(["kcat", "-C", "-b", broker.bootstrap, "-t", topic, "-o", "beginning", "-c", str(rows), "-q",
                            "-f", "%k\n"], work, f"kcat-consume-{topic}", env=env, stdout=subprocess.DEVNULL)
                     for topic in TOPICS]
        time.sleep(1)  # let them connect and find their partitions
        cpu0 = broker.cpu_seconds()
        start = time.monotonic()
        producers = [Timed(["kcat", "-P", "-b", broker.bootstrap, "-t", topic, "-K", "\t", "-l", str(events / f"{topic}.tsv")],
                           work, f"kcat-produce-{topic}", env=env, stdout=subprocess.DEVNULL) for topic in TOPICS]
        for p in producers:
            p.wait(args.timeout)
        produced = time.monotonic() - start
        for c in consumers:
            c.wait(args.timeout)
        seconds = time.monotonic() - start
        total = 3 * rows
        return {"rows": total, "e2e_seconds": seconds, "e2e_rows_per_second": total / seconds,
                "producer_rows_per_second": total / produced,
                "peak_rss_mb": sum(p.rss_kb for p in producers + consumers) / 1024,
                "cpu_seconds": sum(p.cpu for p in producers + consumers),
                "broker_cpu_seconds": broker.cpu_seconds() - cpu0 if cpu0 is not None else None}


def run_baseline(args, work, data, rows, name, rate=0):
    """The original design: DB consumer and acker started first (their groups joined), then
    the producer; timed from the producer's start to the last ack or last row written."""
    python = str(args.venv / "bin/python")
    baseline = ROOT / "bench/baseline"
    with Broker(work, name) as broker:
        state = work / f"{name}-state"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        db = Timed([python, str(baseline / "db_consumer.py"), "--bootstrap", broker.bootstrap,
                    "--database", str(state / "baseline.db"), "--expect", str(3 * rows)], work, f"{name}-db")
        acker = Timed([python, str(baseline / "acker.py"), "--bootstrap", broker.bootstrap,
                       "--state", str(state / "acker.shelve"), "--expect", str(rows)], work, f"{name}-acker")
        db.wait_for_log(r"db: assigned \d+ partitions", 1, 120)
        acker.wait_for_log(r"acker: assigned \d+ partitions", 1, 120)
        cpu0 = broker.cpu_seconds()
        producer = Timed([python, str(baseline / "producer.py"), "--bootstrap", broker.bootstrap, "--rate", str(rate),
                          *[str(data / f"sim_file{i}.xlsx") for i in (1, 2, 3)]], work, f"{name}-producer")
        producer.wait(args.baseline_timeout)
        acker.wait(args.baseline_timeout)
        db.wait(args.baseline_timeout)
        broker_cpu = broker.cpu_seconds() - cpu0 if cpu0 is not None else None
        p, d, a = producer.json_line(), db.json_line(), acker.json_line()
        total = 3 * rows
        e2e = (max(a["done_ms"], d["done_ms"]) - p["started_ms"]) / 1000
        config = genetika_config(work / f"{name}.json", data, state, broker)
        return {
            "rows": total, "e2e_seconds": e2e, "e2e_rows_per_second": total / e2e,
            "producer_rows_per_second": p["rows"] / ((p["done_ms"] - p["started_ms"]) / 1000),
            "db_rows_per_second": d["rows"] / ((d["done_ms"] - d["first_ms"]) / 1000),
            "peak_rss_mb": sum(x.rss_kb for x in (producer, db, acker)) / 1024,
            "cpu_seconds": sum(x.cpu for x in (producer, db, acker)), "broker_cpu_seconds": broker_cpu,
            "delay": report(args.genetika, config, work / f"{name}-report"),
        }


def run_transit(args, work, rate):
    """The broker's latency floor at the paced rate, with plain librdkafka clients
    (bench/transit.py, confluent-kafka): no Genetika involved."""
    with Broker(work, "transit") as broker:
        cpu0 = broker.cpu_seconds()
        probe = Timed([str(args.venv / "bin/python"), str(ROOT / "bench/transit.py"), "--bootstrap", broker.bootstrap,
                       "--rate", str(rate), "--seconds", "10"], work, "transit").wait(300)
        result = probe.json_line()
        result["broker_cpu_seconds"] = broker.cpu_seconds() - cpu0 if cpu0 is not None else None
        if result["count"] != result["expected"]:
            raise RuntimeError(f"transit probe: {result['count']} of {result['expected']} messages arrived")
        return result


def run_floor(args, work, rate):
    """The paced ack delay's floor with Genetika's topology and plain librdkafka clients
    (bench/floor.py): one producer on three topics, two groups reading all three, acks to `ack`."""
    with Broker(work, "floor") as broker:
        probe = Timed([str(args.venv / "bin/python"), str(ROOT / "bench/floor.py"), "--bootstrap", broker.bootstrap,
                       "--rate", str(rate), "--seconds", "20"], work, "floor").wait(300)
        result = probe.json_line()
        if result["count"] != result["expected"]:
            raise RuntimeError(f"floor probe: {result['count']} of {result['expected']} ids acked")
        return result


def run_stages_alone(args, work, data, rows):
    """Each stage alone on one broker, in turn: the producer sends the files, then the DB stage
    and then the acker consume them to the end. Rows/s from each stage's own span (summary),
    CPU from the process."""
    results = {}
    with Broker(work, "alone") as broker:
        state = work / "alone-state"
        shutil.rmtree(state, ignore_errors=True)
        config = genetika_config(work / "alone.json", data, state, broker)
        for stage, span, count in (("producer", "producer", "events_produced"), ("db", "db", "rows_written"),
                                   ("acker", "acker", "acks")):
            summary_path = work / f"alone-{stage}-summary.json"
            run = Timed([args.genetika, "run", "--config", str(config), "--stages", stage, "--exit-when-done",
                         "--summary", str(summary_path)], work, f"alone-{stage}", stdout=subprocess.DEVNULL).wait(args.timeout)
            s = json.loads(summary_path.read_text())
            expected = rows if stage == "acker" else 3 * rows
            if s[count] != expected:
                raise RuntimeError(f"{stage} alone: {count} {s[count]}, expected {expected}")
            events = 3 * rows
            seconds = (s["stages"][span]["last_ms"] - s["stages"][span]["first_ms"]) / 1000
            results[stage] = {"rows_per_second": events / seconds if seconds > 0 else None, "cpu_seconds": run.cpu}
    return results


def run_db_alone(args, work, data, rows, name, postgres, write_path=None):
    """The DB stage alone: the producer fills the topics first (not timed), then `--stages db`
    consumes them to the end into SQLite or a fresh PostgreSQL. Rows/s from the stage's span."""
    with Broker(work, name) as broker, (FreshPostgres(work, name) if postgres else contextlib.nullcontext()) as pg:
        state = work / f"{name}-state"
        shutil.rmtree(state, ignore_errors=True)
        config = genetika_config(work / f"{name}.json", data, state, broker, database=pg.url if pg else None)
        Timed([args.genetika, "run", "--config", str(config), "--stages", "producer", "--exit-when-done"],
              work, f"{name}-producer", stdout=subprocess.DEVNULL).wait(args.timeout)
        summary_path = work / f"{name}-summary.json"
        env = dict(os.environ, GENETIKA_PG_WRITE_PATH=write_path) if write_path else None
        pg_cpu0 = pg.cpu_seconds() if pg else None
        run = Timed([args.genetika, "run", "--config", str(config), "--stages", "db", "--exit-when-done",
                     "--summary", str(summary_path)], work, name, env=env, stdout=subprocess.DEVNULL).wait(args.timeout)
        pg_cpu = pg.cpu_seconds() - pg_cpu0 if pg_cpu0 is not None else None
        s = json.loads(summary_path.read_text())
        if s["rows_written"] != 3 * rows:
            raise RuntimeError(f"{name}: wrote {s['rows_written']} rows, expected {3 * rows}")
        seconds = (s["stages"]["db"]["last_ms"] - s["stages"]["db"]["first_ms"]) / 1000
        return {"rows_per_second": 3 * rows / seconds if seconds > 0 else None, "cpu_seconds": run.cpu,
                "postgres_cpu_seconds": pg_cpu}


def run_db_alone_repeated(args, work, data, rows, name, postgres, write_path=None):
    runs = [run_db_alone(args, work, data, rows, f"{name}-{i + 1}", postgres, write_path) for i in range(args.repeat)]
    result = {key: statistics.median(x[key] for x in runs) if all(x[key] is not None for x in runs) else None
              for key in runs[0]}
    result["runs"] = [x["rows_per_second"] for x in runs]
    return result


def run_postgres(args, work, data, large, results):
    """The PostgreSQL section: the whole pipeline at both sizes and the DB stage alone (each
    write path of `--pg-write-paths`), each beside SQLite's figure from the same `make bench`."""
    pg = {}
    if "genetika" not in results:
        log(f"SQLite, flat out, 3 × {args.rows:,} rows")
        results["genetika"] = run_genetika_repeated(args, work, data, args.rows, "genetika")
    log(f"PostgreSQL, flat out, 3 × {args.rows:,} rows")
    pg["small"] = run_genetika_repeated(args, work, data, args.rows, "pg", postgres=True)
    if "genetika_large" not in results:
        log(f"SQLite, flat out, 3 × {args.large_rows:,} rows")
        results["genetika_large"] = run_genetika_repeated(args, work, large, args.large_rows, "genetika-large")
    log(f"PostgreSQL, flat out, 3 × {args.large_rows:,} rows")
    pg["large"] = run_genetika_repeated(args, work, large, args.large_rows, "pg-large", postgres=True)
    log(f"the DB stage alone into SQLite, 3 × {args.rows:,} rows")
    pg["db_alone_sqlite"] = run_db_alone_repeated(args, work, data, args.rows, "db-alone-sqlite", postgres=False)
    pg["db_alone"] = {}
    for path in args.pg_write_paths:
        log(f"the DB stage alone into PostgreSQL ({path}), 3 × {args.rows:,} rows")
        pg["db_alone"][path] = run_db_alone_repeated(args, work, data, args.rows, f"db-alone-pg-{path}", postgres=True,
                                                     write_path=path)
    results["postgres"] = pg


def render_postgres(args, r):
    g, gl, pg = r["genetika"], r["genetika_large"], r["postgres"]
    small, large = pg["small"], pg["large"]

    def verdict(ok):
        return "met" if ok else "**missed**"

    lines = [
        "<!-- bench-postgres:start -->",
        "### PostgreSQL beside SQLite (`make bench`)",
        "",
        f"The same spreadsheets and broker set-up as above, measured {datetime.date.today().isoformat()} on {machine()}; each",
        "PostgreSQL run against a fresh local cluster (`initdb`, the server's defaults but for the port) on the",
        "same machine, so the server's CPU competes with Genetika's and the broker's for the two cores.",
        f"Server settings: {small.get('postgres_settings', '–')}.",
        f"Medians of {args.repeat} runs each. Reproduce the section alone: `BENCH_ONLY=postgres make bench`.",
        "",
        "| | rows | end-to-end rows/s | producer rows/s | DB rows/s | Genetika CPU s | PostgreSQL CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, x in (("SQLite", g), ("PostgreSQL", small), ("SQLite", gl), ("PostgreSQL", large)):
        lines.append(f"| {label} | {x['rows']:,} | {fmt(x['e2e_rows_per_second'])} | {fmt(x.get('producer_rows_per_second'))} | "
                     f"{fmt(x.get('db_rows_per_second'))} | {fmt(x['cpu_seconds'], 1)} | {fmt(x.get('postgres_cpu_seconds'), 1)} |")
    lines += ["", f"The DB stage alone (`--stages db`, the topics filled beforehand), 3 × {args.rows:,} rows; "
              "`GENETIKA_PG_WRITE_PATH` picks the write path (`copy` is Genetika's).", "",
              "| database | write path | rows/s (median) | runs | Genetika CPU s | PostgreSQL CPU s |",
              "|---|---|---:|---|---:|---:|"]
    alone = pg["db_alone_sqlite"]
    lines.append(f"| SQLite | prepared upsert per row | {fmt(alone['rows_per_second'])} | "
                 f"{', '.join(fmt(x) for x in alone['runs'])} | {fmt(alone['cpu_seconds'], 1)} | – |")
    for path, x in pg["db_alone"].items():
        lines.append(f"| PostgreSQL | {path} | {fmt(x['rows_per_second'])} | {', '.join(fmt(v) for v in x['runs'])} | "
                     f"{fmt(x['cpu_seconds'], 1)} | {fmt(x['postgres_cpu_seconds'], 1)} |")
    lines += ["", "| target | measured | |", "|---|---|---|"]
    for label, p, q in ((f"3 × {args.rows:,}", small, g), (f"3 × {args.large_rows:,}", large, gl)):
        ratio = p["e2e_rows_per_second"] / q["e2e_rows_per_second"]
        lines.append(f"| PostgreSQL end-to-end ≥ 1.0× SQLite's ({label}) | {ratio:.2f}× | {verdict(ratio >= 1.0)} |")
    scale = large["e2e_rows_per_second"] / small["e2e_rows_per_second"]
    lines.append(f"| PostgreSQL 3 × {args.large_rows:,} ≥ 0.9× its 3 × {args.rows:,} rate | {scale:.2f}× | {verdict(scale >= 0.9)} |")
    copy = pg["db_alone"].get("copy")
    if copy:
        lines.append(f"| the DB stage alone on PostgreSQL ≥ 150,000 rows/s (3 × {args.rows:,}) | {fmt(copy['rows_per_second'])} rows/s | "
                     f"{verdict(copy['rows_per_second'] >= 150_000)} |")
    lines += ["", "<!-- bench-postgres:end -->"]
    return "\n".join(lines)


def machine():
    cpu = "unknown CPU"
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = int(pathlib.Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    return f"{os.cpu_count()} cores, {cpu}, {mem:.0f} GiB, {platform.system()} {platform.release()}"


def fmt(value, digits=0):
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows per spreadsheet")
    parser.add_argument("--large-rows", type=int, default=1_000_000, help="rows per spreadsheet of the large run (LARGE_ROWS)")
    parser.add_argument("--paced-rows", type=int, default=20_000, help="rows per spreadsheet in the paced runs")
    parser.add_argument("--rate", type=int, default=1000, help="events per second per topic in the paced runs")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each flat-out Genetika size (REPEAT); figures are their medians")
    parser.add_argument("--genetika", required=True)
    parser.add_argument("--venv", type=pathlib.Path, required=True)
    parser.add_argument("--work", type=pathlib.Path, default=ROOT / ".bench/pipeline")
    parser.add_argument("--timeout", type=int, default=900)
    parser.add_argument("--baseline-timeout", type=int, default=7200)
    parser.add_argument("--write-docs", action="store_true", help="write the results into docs/benchmarks.md")
    parser.add_argument("--transit-only", action="store_true", help="only measure the broker's latency floor (bench/transit.py)")
    parser.add_argument("--only", choices=["all", "postgres"], default="all",
                        help="postgres: only the PostgreSQL section and the SQLite runs it compares with (BENCH_ONLY)")
    parser.add_argument("--pg-write-paths", default="copy,insert",
                        help="PostgreSQL write paths the DB stage alone is measured with (GENETIKA_PG_WRITE_PATH values)")
    args = parser.parse_args()
    args.pg_write_paths = [p for p in args.pg_write_paths.split(",") if p]
    args.large_rows = args.large_rows or 4 * args.rows
    args.work.mkdir(parents=True, exist_ok=True)
    args.dump_events = args.work / "events"
    if args.transit_only:
        print(json.dumps(run_transit(args, args.work, args.rate)))
        return
    shutil.rmtree(args.dump_events, ignore_errors=True)

    def dataset(rows):
        path = args.work / f"data-{rows}"
        if not (path / "sim_file3.xlsx").exists():
            log(f"generating 3 × {rows:,} rows into {path}")
            subprocess.run([os.path.join(os.path.dirname(args.genetika), "genetika-dataset"), "--rows", str(rows), "--out", str(path)], check=True,
                           stdout=subprocess.DEVNULL)
        return path

    results = {}
    if args.only == "postgres":
        args.dump_events = None
        data, large = dataset(args.rows), dataset(args.large_rows)
        run_postgres(args, args.work, data, large, results)
        (args.work / "results-postgres.json").write_text(json.dumps(results, indent=2))
        text = render_postgres(args, results)
        print(text)
        if args.write_docs:
            write_docs(text, "bench-postgres")
            log("written to docs/benchmarks.md")
        return
    data, large, paced = dataset(args.rows), dataset(args.large_rows), dataset(args.paced_rows)
    log(f"Genetika, flat out, 3 × {args.rows:,} rows")
    results["genetika"] = run_genetika_repeated(args, args.work, data, args.rows, "genetika")
    log(f"kcat, 3 × {args.rows:,} messages (Genetika's events replayed)")
    results["kcat"] = run_kcat(args, args.work, args.dump_events, args.rows)
    log(f"Genetika, paced at {args.rate:,} events/s per topic, 3 × {args.paced_rows:,} rows")
    results["genetika_paced"] = run_genetika(args, args.work, paced, args.paced_rows, "genetika-paced", ratePerSecond=args.rate)
    log(f"plain librdkafka clients, paced at {args.rate:,} messages/s per topic (the broker's latency floor)")
    results["transit"] = run_transit(args, args.work, args.rate)
    log(f"plain librdkafka clients in Genetika's topology, paced at {args.rate:,} messages/s per topic (bench/floor.py)")
    results["floor"] = run_floor(args, args.work, args.rate)
    log(f"each stage alone, 3 × {args.rows:,} rows")
    results["alone"] = run_stages_alone(args, args.work, data, args.rows)
    log(f"Genetika, flat out, 3 × {args.large_rows:,} rows (cost per row against N)")
    results["genetika_large"] = run_genetika_repeated(args, args.work, large, args.large_rows, "genetika-large")
    if not args.skip_baseline:
        log(f"baseline (Python), flat out, 3 × {args.rows:,} rows: this takes a while")
        results["baseline"] = run_baseline(args, args.work, data, args.rows, "baseline")
        log(f"baseline (Python), paced at {args.rate:,} events/s per topic, 3 × {args.paced_rows:,} rows")
        results["baseline_paced"] = run_baseline(args, args.work, paced, args.paced_rows, "baseline-paced", rate=args.rate)

    run_postgres(args, args.work, data, large, results)

    (args.work / "results.json").write_text(json.dumps(results, indent=2))
    text, pg_text = render(args, results), render_postgres(args, results)
    print(text)
    print(pg_text)
    if args.write_docs:
        write_docs(text)
        write_docs(pg_text, "bench-postgres")
        log("written to docs/benchmarks.md")


def render(args, r):
    g, k, gp, gl = r["genetika"], r["kcat"], r["genetika_paced"], r["genetika_large"]
    b, bp = r.get("baseline"), r.get("baseline_paced")
    lines = [
        "<!-- bench:start -->",
        "### Whole pipeline (`make bench`)",
        "",
        f"3 spreadsheets × {args.rows:,} rows (the seed's columns, `genetika-dataset`), each contender against a",
        f"fresh local broker ({os.environ.get('BROKER', 'tansu')}), measured {datetime.date.today().isoformat()} on {machine()}.",
        f"Reproduce: `make bench` (`ROWS=N make bench` for another size; `SKIP_BASELINE=1` leaves out the slow Python run).",
        f"Genetika's flat-out figures are the medians of {args.repeat} runs each (`REPEAT`), figure by figure.",
        "",
        "End-to-end: from the first row read to the last ack or the last row written, whichever is later.",
        "kcat: from the producers' start to the last message consumed.",
        "",
        "| | rows | end-to-end s | end-to-end rows/s | producer rows/s | DB rows/s | peak RSS MB | CPU s | broker CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def row(name, x):
        return (f"| {name} | {x['rows']:,} | {fmt(x['e2e_seconds'], 2)} | {fmt(x['e2e_rows_per_second'])} | "
                f"{fmt(x.get('producer_rows_per_second'))} | {fmt(x.get('db_rows_per_second'))} | {fmt(x['peak_rss_mb'], 1)} | "
                f"{fmt(x['cpu_seconds'], 1)} | {fmt(x.get('broker_cpu_seconds'), 1)} |")

    lines.append(row("Genetika", g))
    lines.append(row(f"Genetika, 3 × {args.large_rows:,}", gl))
    if b:
        lines.append(row("baseline (Python design)", b))
    lines.append(row("kcat produce + consume", k))
    for name, x in ((f"3 × {args.rows:,}", g), (f"3 × {args.large_rows:,}", gl)):
        if x.get("runs"):
            each = "; ".join(f"{fmt(run['e2e_rows_per_second'])} rows/s, {fmt(run['cpu_seconds'], 1)} s CPU, "
                             f"{fmt(run['peak_rss_mb'], 1)} MB" for run in x["runs"])
            lines.append(f"\nGenetika {name}: the median of {len(x['runs'])} runs, figure by figure ({each}).")
    lines += ["", "Ack delay (ack time − latest topic time of the same id, ms; Kafka timestamps). For Genetika,",
              "`genetika run --summary` also splits it: from the latest event's creation until the acker has it",
              "in hand (producer linger, broker, fetch), and from then until its ack is created (the acker).", "",
              "| | regime | acks | p50 | p99 | to acker p50 / p99 | in acker p50 / p99 |", "|---|---|---:|---:|---:|---:|---:|"]

    def delay_row(name, regime, x):
        split = x.get("delay_split") or {}
        to, inside = split.get("to_acker") or {}, split.get("in_acker") or {}
        return (f"| {name} | {regime} | {x['delay']['acks']:,} | {fmt(x['delay']['p50'], 1)} | {fmt(x['delay']['p99'], 1)} | "
                f"{fmt(to.get('p50'), 1)} / {fmt(to.get('p99'), 1)} | {fmt(inside.get('p50'), 2)} / {fmt(inside.get('p99'), 2)} |")

    lines.append(delay_row("Genetika", f"paced, {args.rate:,}/s per topic", gp))
    lines.append(delay_row("Genetika", f"flat out, 3 × {args.rows:,}", g))
    lines.append(delay_row("Genetika", f"flat out, 3 × {args.large_rows:,}", gl))
    fl = r.get("floor")
    if fl:
        lines.append(f"| plain librdkafka clients in Genetika's topology (`bench/floor.py`) | paced, {args.rate:,}/s per topic | "
                     f"{fl['count']:,} acks | {fmt(fl['p50'], 1)} | {fmt(fl['p99'], 1)} | – | – |")
    tr = r.get("transit")
    if tr:
        lines.append(f"| librdkafka producer → consumer, no Genetika (`bench/transit.py`) | paced, {args.rate:,}/s per topic | "
                     f"{tr['count']:,} messages | {fmt(tr['p50'], 1)} | {fmt(tr['p99'], 1)} | – | – |")
    if bp:
        lines.append(delay_row("baseline", f"paced, {args.rate:,}/s per topic", bp))
    if b:
        lines.append(delay_row("baseline", "flat out", b))

    def verdict(ok):
        return "met" if ok else "**missed**"

    alone = r.get("alone")
    if alone:
        together = {"producer": g.get("producer_rows_per_second"), "db": g.get("db_rows_per_second"),
                    "acker": g.get("acker_events_per_second")}
        lines += ["", f"Each stage alone (`--stages NAME`, in turn on one broker) and together, 3 × {args.rows:,} rows;",
                  "rows/s counts events handled (the acker's three per ack), CPU is the whole process's.", "",
                  "| stage | alone rows/s | alone CPU s | together rows/s |", "|---|---:|---:|---:|"]
        for stage in ("producer", "db", "acker"):
            lines.append(f"| {stage} | {fmt(alone[stage]['rows_per_second'])} | {fmt(alone[stage]['cpu_seconds'], 1)} | "
                         f"{fmt(together[stage])} |")
        lines.append(f"| all three (one process) | – | – | {fmt(g['e2e_rows_per_second'])} (CPU {fmt(g['cpu_seconds'], 1)} s) |")

    lines += ["", "| target | measured | |", "|---|---|---|"]
    if b:
        ratio = g["e2e_rows_per_second"] / b["e2e_rows_per_second"]
        lines.append(f"| end-to-end ≥ 50× the baseline | {ratio:,.1f}× | {verdict(ratio >= 50)} |")
    ratio = g["e2e_rows_per_second"] / k["e2e_rows_per_second"]
    lines.append(f"| end-to-end ≥ 0.5× kcat's produce + consume | {ratio:.2f}× | {verdict(ratio >= 0.5)} |")
    p50, p99 = gp["delay"]["p50"], gp["delay"]["p99"]
    lines.append(f"| paced ack delay p50 ≤ 2 ms | {fmt(p50, 1)} ms | {verdict(p50 is not None and p50 <= 2)} |")
    lines.append(f"| paced ack delay p99 ≤ 10 ms | {fmt(p99, 1)} ms | {verdict(p99 is not None and p99 <= 10)} |")
    growth = gl["peak_rss_mb"] / g["peak_rss_mb"]
    lines.append(f"| peak RSS flat in N ({args.rows:,} → {args.large_rows:,} rows per file, within 25 %) | "
                 f"{fmt(g['peak_rss_mb'], 1)} → {fmt(gl['peak_rss_mb'], 1)} MB ({growth:.2f}×) | {verdict(growth <= 1.25)} |")
    # Issue 13's targets.
    ratio = g["e2e_rows_per_second"] / k["e2e_rows_per_second"]
    lines.append(f"| end-to-end ≥ 0.35× kcat (3 × {args.rows:,}) | {ratio:.2f}× | {verdict(ratio >= 0.35)} |")
    cpu_row = g["cpu_seconds"] / g["rows"] * 1e6
    cpu_row_large = gl["cpu_seconds"] / gl["rows"] * 1e6
    lines.append(f"| Genetika's CPU ≤ 20 µs per row | {cpu_row:.1f} µs | {verdict(cpu_row <= 20)} |")
    scale = gl["e2e_rows_per_second"] / g["e2e_rows_per_second"]
    lines.append(f"| 3 × {args.large_rows:,}: end-to-end ≥ 0.9× the 3 × {args.rows:,} figure | {scale:.2f}× | {verdict(scale >= 0.9)} |")
    lines.append(f"| 3 × {args.large_rows:,}: CPU per row ≤ 1.1× | {cpu_row_large:.1f} µs ({cpu_row_large / cpu_row:.2f}×) | "
                 f"{verdict(cpu_row_large <= 1.1 * cpu_row)} |")
    for label, x in ((f"3 × {args.rows:,}", g), (f"3 × {args.large_rows:,}", gl)):
        p99 = x["delay"]["p99"]
        lines.append(f"| flat-out ack delay p99 ≤ 2 s ({label}) | {fmt(p99, 0)} ms | {verdict(p99 is not None and p99 <= 2000)} |")
    fl = r.get("floor")
    if fl and fl["p50"] and fl["p99"]:
        lines.append(f"| paced ack delay p50 ≤ 1.25× the same-topology floor's | {fmt(p50, 1)} / {fmt(fl['p50'], 1)} ms "
                     f"({p50 / fl['p50']:.2f}×) | {verdict(p50 <= 1.25 * fl['p50'])} |")
        lines.append(f"| paced ack delay p99 ≤ 1.5× the same-topology floor's | {fmt(gp['delay']['p99'], 1)} / {fmt(fl['p99'], 1)} ms "
                     f"({gp['delay']['p99'] / fl['p99']:.2f}×) | {verdict(gp['delay']['p99'] <= 1.5 * fl['p99'])} |")
    lines += ["", "<!-- bench:end -->"]
    return "\n".join(lines)


def write_docs(section, marker="bench"):
    path = ROOT / "docs/benchmarks.md"
    text = path.read_text()
    pattern = re.compile(rf"<!-- {marker}:start -->.*?<!-- {marker}:end -->", re.S)
    text = pattern.sub(lambda _: section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as error:
        log(f"failed: {error}")
        sys.exit(1)
