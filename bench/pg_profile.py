#!/usr/bin/env python3
"""Where the DB stage's time goes on PostgreSQL: fills the source topics once (the producer
alone), then runs the DB stage alone into a fresh database once per write path
(GENETIKA_PG_WRITE_PATH), on a server with pg_stat_statements loaded, and prints per path
the stage's rows/s, Genetika's CPU, the server's CPU, and the statements that took the
server's time (calls, total and mean execution time, rows).

  python3 bench/pg_profile.py --genetika .build/release/genetika [--rows 100000] [--paths copy,insert]

A measuring tool for docs/architecture.md ("Databases"); `make bench` reports the figures
that targets are judged by."""
import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
import bench  # noqa: E402
from genetika_cluster import Postgres  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genetika", required=True)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--paths", default="copy,insert")
    parser.add_argument("--whole", action="store_true", help="the whole pipeline (all three stages) once, instead of the DB stage per path")
    parser.add_argument("--server-options", default="", help="more server settings, as postgres -c options")
    parser.add_argument("--work", type=pathlib.Path, default=ROOT / ".bench/pg-profile")
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    data = args.work / "data"
    subprocess.run([str(pathlib.Path(args.genetika).parent / "genetika-dataset"), "--rows", str(args.rows), "--out", str(data)],
                   check=True, stdout=subprocess.DEVNULL)
    pg = Postgres(str(args.work), options="-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all " + args.server_options)
    try:
        pg.query("CREATE EXTENSION pg_stat_statements")
        print(f"server: {pg.settings()}")
        with bench.Broker(args.work, "profile") as broker:
            if args.whole:
                pg.query("SELECT pg_stat_statements_reset()")
                config = bench.genetika_config(args.work / "whole.json", data, args.work / "whole-state", broker, database=pg.url)
                summary = args.work / "whole-summary.json"
                cpu0, wal0 = pg.cpu_seconds(), server_counters(pg)
                run = bench.Timed([args.genetika, "run", "--config", str(config), "--exit-when-done", "--summary", str(summary)],
                                  args.work, "whole", stdout=subprocess.DEVNULL).wait(1800)
                report(pg, json.loads(summary.read_text()), "whole pipeline", "producer", run.cpu, pg.cpu_seconds() - cpu0, wal0)
                return
            # The DB stage alone: the topics filled first (not timed), then read once per path.
            config = bench.genetika_config(args.work / "producer.json", data, args.work / "producer-state", broker, database=pg.url)
            bench.Timed([args.genetika, "run", "--config", str(config), "--stages", "producer", "--exit-when-done"],
                        args.work, "producer", stdout=subprocess.DEVNULL).wait(900)
            for path in args.paths.split(","):
                pg.query("DROP TABLE IF EXISTS data1, data2, data3, genetika_offsets, genetika_topic_ids, genetika_owners CASCADE")
                pg.query("SELECT pg_stat_statements_reset()")
                state = args.work / f"{path}-state"
                config = bench.genetika_config(args.work / f"{path}.json", data, state, broker, database=pg.url)
                summary = args.work / f"{path}-summary.json"
                cpu0 = pg.cpu_seconds()
                run = bench.Timed([args.genetika, "run", "--config", str(config), "--stages", "db", "--exit-when-done",
                                   "--summary", str(summary)], args.work, f"db-{path}",
                                  env=dict(bench.os.environ, GENETIKA_PG_WRITE_PATH=path), stdout=subprocess.DEVNULL).wait(900)
                report(pg, json.loads(summary.read_text()), path, "db", run.cpu, pg.cpu_seconds() - cpu0)
    finally:
        pg.stop()


def server_counters(pg):
    """WAL and checkpoint counters (pg_stat_wal, pg_stat_bgwriter): what a long run adds that a short one does not."""
    wal = pg.query("SELECT wal_records, wal_fpi, wal_bytes FROM pg_stat_wal")[0]
    bg = pg.query("SELECT checkpoints_timed, checkpoints_req, buffers_checkpoint, buffers_clean, buffers_backend FROM pg_stat_bgwriter")[0]
    return dict(zip(("wal_records", "wal_fpi", "wal_bytes", "checkpoints_timed", "checkpoints_req", "buffers_checkpoint",
                     "buffers_clean", "buffers_backend"), (int(x) for x in wal + bg)))


def server_cpu_by_process(pg):
    """CPU seconds so far of each live server process, by its title (backends summed)."""
    tick = os.sysconf("SC_CLK_TCK")
    postmaster = int(open(f"{pg.dir}/data/postmaster.pid").readline())
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
            if int(fields[1]) != postmaster:
                continue
            title = open(f"/proc/{entry}/cmdline").read().replace("\0", " ").split()
        except (OSError, IndexError, ValueError):
            continue
        name = " ".join(title[1:3]) if len(title) > 2 and title[1] != "genetika" else "backends"
        out[name] = out.get(name, 0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def report(pg, s, label, span_stage, genetika_cpu, server_cpu, counters0=None):
    span = (max(st["last_ms"] for st in s["stages"].values() if st.get("last_ms")) - s["stages"][span_stage]["first_ms"]) / 1000
    print(f"\n== {label}: {s['rows_written']:,} rows in {span:.2f} s = {s['rows_written'] / span:,.0f} rows/s; "
          f"Genetika CPU {genetika_cpu:.1f} s, server CPU {server_cpu:.1f} s")
    if counters0 is not None:
        now = server_counters(pg)
        print("server counters during the run: " + ", ".join(f"{k}={now[k] - counters0[k]:,}" for k in now))
        print("live server processes' CPU (s): " + ", ".join(f"{k}={v:.1f}" for k, v in sorted(server_cpu_by_process(pg).items())))
        print("sizes: " + ", ".join(f"{name}={size}" for name, size in pg.query(
            "SELECT relname, pg_size_pretty(pg_total_relation_size(oid)) FROM pg_class WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY pg_total_relation_size(oid) DESC LIMIT 6")))
    rows = pg.query("""SELECT calls, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 2), rows,
                              left(regexp_replace(query, '\\s+', ' ', 'g'), 110)
                       FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'
                       ORDER BY total_exec_time DESC LIMIT 10""")
    print("| calls | total ms | mean ms | rows | statement |\n|---:|---:|---:|---:|---|")
    for calls, total, mean, count, query in rows:
        print(f"| {calls} | {total} | {mean} | {count} | `{query.replace('|', '/')}` |")


if __name__ == "__main__":
    main()
