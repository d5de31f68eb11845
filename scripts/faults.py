#!/usr/bin/env python3
"""make faults: inject faults into a running `genetika run` and check what the user gets.

Every scenario starts its own broker (Tansu on a free port: in memory, or on a local S3
endpoint from moto so that it keeps its topics across a SIGKILL) and its own state, drives
a release-like run of the real binary, injects one fault and asserts the outcome: exact
rows, one ack per id, a bounded time to recover or to exit with a clear error, and what
/health, /metrics and the log say meanwhile.

    scripts/faults.py GENETIKA [SCENARIO ...]     (default: all scenarios)

Prints one line per scenario and ends with "N passed, M failed"; exits 1 if any failed.
"""
import json
import os
import resource
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from genetika_cluster import ROOT, TANSU, TOPICS, Failed, check, free_port, wait_for, port_open, Moto, Broker  # noqa: E402


RUNS = []


def allow_core_dumps():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def crash_report(genetika, work, since):
    """If a genetika process dumped core during the scenario: its threads' backtraces (gdb),
    and the core moved into the kept work directory."""
    core = "core"
    if not os.path.exists(core) or os.path.getmtime(core) < since or shutil.which("gdb") is None:
        return ""
    try:
        out = subprocess.run(["gdb", "-batch", "-ex", "bt 30", "-ex", "thread apply all bt 12", genetika, core],
                             capture_output=True, text=True, timeout=120).stdout
    except subprocess.TimeoutExpired:
        out = "gdb timed out"
    shutil.move(core, os.path.join(work, "core"))
    lines = [line for line in out.splitlines() if line.startswith(("#", "Thread", "Program terminated"))]
    return "\n[faults]   crash backtrace (core kept in the work directory):\n" + "\n".join(lines[:160])


class Run:
    """One `genetika run` in the background, its log in a file."""

    def __init__(self, genetika, config, log, *args):
        RUNS.append(self)
        self.log_path = log
        self.log = open(log, "a")
        # A crash leaves a core dump (in the current directory, as this machine's core_pattern
        # says), which a failed scenario turns into a backtrace (crash_report).
        self.process = subprocess.Popen([genetika, "run", "--config", config, *args], stdout=self.log, stderr=self.log,
                                        preexec_fn=allow_core_dumps)
        self.genetika = genetika
        self.started = time.monotonic()

    def wait(self, timeout):
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise Failed(f"genetika did not exit within {timeout} s")

    def text(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def make_config(work, name, broker, data, **change):
    config = json.load(open(os.path.join(ROOT, "config.json")))
    config["kafka"]["bootstrapServers"] = broker.bootstrap
    for source in config["sources"]:
        source["file"] = os.path.join(data, os.path.basename(source["file"]))
    state = os.path.join(work, name + "-state")
    config["database"]["url"] = f"sqlite://{state}/genetika.db"
    config["stateDirectory"] = state
    config["observability"]["port"] = free_port()
    config["stages"]["supervisor"] = {"initialBackoffMs": 100, "maxBackoffMs": 1000, "maxRestarts": 5, "windowSeconds": 60}
    for path, value in change.items():
        target = config
        keys = path.split("__")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target.setdefault(key, {})
        target[keys[-1]] = value
    path = os.path.join(work, name + ".json")
    json.dump(config, open(path, "w"), indent=2)
    return path, config


def rows_written(config):
    path = config["database"]["url"][len("sqlite://"):]
    if not os.path.exists(path):
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1)
        total = sum(db.execute(f'SELECT count(*) FROM "{s["table"]}"').fetchone()[0] for s in config["sources"])
        db.close()
        return total
    except sqlite3.Error:
        return 0


def table_counts(config):
    db = sqlite3.connect(config["database"]["url"][len("sqlite://"):])
    counts = {s["table"]: db.execute(f'SELECT count(*) FROM "{s["table"]}"').fetchone()[0] for s in config["sources"]}
    db.close()
    return counts


def http_get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return None, ""


def metric(text, name, labels=""):
    """The value of one series in Prometheus text (`labels`: e.g. 'stage="db"'), or None."""
    for line in text.splitlines():
        if line.startswith(name) and (not labels or labels in line) and not line.startswith("#"):
            series = line.split(" ")[0]
            if series == name or series.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return None


def report(genetika, config_path, out):
    result = subprocess.run([genetika, "report", "--config", config_path, "--out", out], capture_output=True, text=True, timeout=180)
    check(result.returncode == 0, f"genetika report failed: {result.stdout[-500:]} {result.stderr[-500:]}")
    return json.load(open(os.path.join(out, "summary.json")))


def check_complete(genetika, config_path, config, work, rows):
    counts = table_counts(config)
    for table, count in counts.items():
        check(count == rows, f"{table}: {count} rows, expected {rows}")
    summary = report(genetika, config_path, os.path.join(work, "report"))
    check(summary["ids"] == rows, f"{summary['ids']} ids in the topics, expected {rows}")
    check(summary["acks"] == rows and summary["acked_ids"] == rows,
          f"{summary['acks']} acks for {summary['acked_ids']} ids, expected one for each of {rows}")
    check(not summary["duplicate_acks"], f"duplicate acks: {summary['duplicate_acks'][:10]}")
    check(not summary["missing_ack"], f"ids without an ack: {summary['missing_ack'][:10]}")
    return summary


def generate(genetika, work, rows, seed=7):
    data = os.path.join(work, "data")
    subprocess.run([os.path.join(os.path.dirname(genetika), "genetika-dataset"), "--rows", str(rows), "--out", data, "--seed", str(seed)], check=True,
                   stdout=subprocess.DEVNULL)
    return data


def corrupt_middle(path, part="xl/worksheets/sheet1.xml", at=0.5):
    """Flips bytes in the middle of one part's compressed data: the zip still opens and the
    first rows read, then inflating (or the CRC check) fails part-way."""
    import zipfile
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(part)
    data = bytearray(open(path, "rb").read())
    header = info.header_offset
    name_length = int.from_bytes(data[header + 26:header + 28], "little")
    extra_length = int.from_bytes(data[header + 28:header + 30], "little")
    start = header + 30 + name_length + extra_length
    middle = start + int(info.compress_size * at)
    for i in range(64):
        data[middle + i] ^= 0x5A
    open(path, "wb").write(bytes(data))


def run_to_failure(genetika, path, work, timeout):
    """Runs genetika as a daemon (no --exit-when-done) and expects it to end with status 1
    within `timeout` s; returns the run and its log."""
    run = Run(genetika, path, os.path.join(work, "run.log"))
    code = run.wait(timeout)
    text = run.text()
    check(code == 1, f"exit status {code}, expected 1: {text[-1500:]}")
    return run, text


# ---- scenarios ------------------------------------------------------------------------------

def broker_outage_keeps_data(genetika, work):
    """The broker is SIGKILLed while the DB stage is reading and comes back 10 s later with
    its data (S3 storage): /health says so meanwhile, each client logs the outage once, and
    the stage resumes: exact rows; then the acker acks every id once.

    The kill lands while only consumers talk to the broker: Tansu 0.6's S3 engine loses
    acknowledged records that are in flight when it is killed (measured with a plain
    librdkafka producer: 4,000 acknowledged, 3,998 kept), which no client can make up for.
    Producer-side outages are covered by broker_restart_loses_data."""
    rows = 4000
    moto = Moto(work)
    broker = Broker(work, storage=moto)
    try:
        data = generate(genetika, work, rows)
        path, config = make_config(work, "run", broker, data)
        producer = Run(genetika, path, os.path.join(work, "producer.log"), "--stages", "producer", "--exit-when-done")
        check(producer.wait(120) == 0, f"the producer failed: {producer.text()[-800:]}")
        time.sleep(2)
        # The DB stage reads slowly (small batches, a pause each) so that the kill lands mid-stream.
        path, config = make_config(work, "db", broker, data, stages__db__batchSize=100, stages__db__lingerMs=200)
        run = Run(genetika, path, os.path.join(work, "db.log"), "--stages", "db", "--exit-when-done")
        port = config["observability"]["port"]
        wait_for(lambda: rows_written(config) >= 3 * rows // 10, 120, "a tenth of the rows written")
        broker.kill()
        at_kill = rows_written(config)
        down = wait_for(lambda: (lambda r: r if r[0] == 503 and "reached no broker" in r[1] else None)(http_get(port, "/health")),
                        15, "/health to report the broker outage (503)")
        time.sleep(10)
        broker.start()
        wait_for(lambda: http_get(port, "/health")[0] in (200, None), 60, "/health to be 200 again after the broker came back")
        check(run.wait(240) == 0, f"the DB stage exited with {run.process.returncode}: {run.text()[-1500:]}")
        check(at_kill < 3 * rows, f"the kill did not land mid-stream ({at_kill} of {3 * rows} rows written)")
        text = run.text()
        outage_lines = len(re.findall(r"no Kafka broker reachable", text))
        check(1 <= outage_lines <= 4, f"{outage_lines} 'no Kafka broker reachable' lines from 2 clients, expected one each per outage")
        check(len(re.findall(r"reachable again", text)) >= 1, "no line says the broker is reachable again")
        path, config = make_config(work, "acker", broker, data)
        acker = Run(genetika, path, os.path.join(work, "acker.log"), "--stages", "acker", "--exit-when-done")
        check(acker.wait(120) == 0, f"the acker failed: {acker.text()[-800:]}")
        config["database"]["url"] = make_config(work, "db", broker, data)[1]["database"]["url"]
        check_complete(genetika, path, config, work, rows)
        return (f"killed at {at_kill} of {3 * rows} rows; /health meanwhile: {json.loads(down[1])['problems'][0][:90]}…; "
                f"{outage_lines} outage lines; exact rows and acks")
    finally:
        broker.kill()
        moto.stop()


def broker_restart_loses_data(genetika, work):
    """The broker is SIGKILLed mid-stream and restarts empty (in-memory storage): Genetika
    recreates the topics, detects that its stored offsets belong to logs that are gone,
    reports it (log, summary, metric) and completes with exact counts and one ack per id."""
    rows = 3000
    broker = Broker(work, storage="memory")
    try:
        data = generate(genetika, work, rows)
        path, config = make_config(work, "run", broker, data, stages__producer__ratePerSecond=250)
        run = Run(genetika, path, os.path.join(work, "run.log"), "--exit-when-done", "--summary", os.path.join(work, "summary.json"))
        wait_for(lambda: rows_written(config) >= 3 * rows // 4, 120, "a quarter of the rows written")
        broker.kill()
        time.sleep(2)
        broker.start()  # empty: no topics, no groups
        port = config["observability"]["port"]
        resets_seen = 0
        deadline = time.monotonic() + 300
        while run.process.poll() is None and time.monotonic() < deadline:
            status, text = http_get(port, "/metrics")
            if status == 200:
                resets_seen = max(resets_seen, metric(text, "genetika_partition_resets_total") or 0)
            time.sleep(0.5)
        check(run.wait(5) == 0, f"genetika exited with {run.process.returncode}: {run.text()[-1500:]}")
        text = run.text()
        summary = json.load(open(os.path.join(work, "summary.json")))
        check(summary["partition_resets"] > 0, "no partition reset was counted in the run summary")
        check(resets_seen > 0, "genetika_partition_resets_total never showed a reset in /metrics")
        check("recreated" in text or "beyond the partition's end" in text, "no log line says the broker lost its data")
        check(summary["delivery_failures"] == 0, f"delivery failures {summary['delivery_failures']}: every event was resent")
        check(summary["deliveries_resent"] > 0, "no delivery was counted as resent, although the broker lost them")
        check("delivery failed" not in text, "a per-row 'delivery failed' line was logged")
        failing = len(re.findall(r"deliveries are failing", text))
        check(1 <= failing <= 1 + summary["stage_restarts"], f"{failing} 'deliveries are failing' lines, expected one per outage")
        check_complete(genetika, path, config, work, rows)
        return (f"{summary['partition_resets']} partition resets and {summary['deliveries_resent']} resent deliveries reported "
                f"({failing} outage line); exact counts and acks on the new topics")
    finally:
        broker.kill()


def file_records(config):
    path = os.path.join(config["stateDirectory"], "files.db")
    if not os.path.exists(path):
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
    try:
        return db.execute("SELECT id, path, status, rows_sent, moved_to FROM genetika_files ORDER BY id").fetchall()
    finally:
        db.close()


def inbox_killed_while_sending(genetika, work):
    """Genetika reads its sources from inbox folders and is SIGKILLed while the files are
    `sending`: they stay in the inboxes, the next run sends them again under the same records,
    moves them to done/, and the tables and acks are exact, one ack per id."""
    rows = 3000
    broker = Broker(work)
    try:
        data = generate(genetika, work, rows)
        inboxes = [os.path.join(work, f"inbox{i}") for i in (1, 2, 3)]
        change = {f"sources__{i}__inbox": inboxes[i] for i in range(3)}
        change.update({f"sources__{i}__file": None for i in range(3)})
        path, config = make_config(work, "run", broker, data, stages__producer__ratePerSecond=500,
                                   stages__producer__settleMs=200, **change)
        run = Run(genetika, path, os.path.join(work, "run.log"))
        wait_for(lambda: all(os.path.isdir(os.path.join(inbox, "done")) for inbox in inboxes), 60, "the inbox folders")
        for i, inbox in enumerate(inboxes):
            os.rename(os.path.join(data, f"sim_file{i + 1}.xlsx"), os.path.join(inbox, f"sim_file{i + 1}.xlsx"))
        wait_for(lambda: rows_written(config) >= 3 * rows // 5, 120, "a fifth of the rows written")
        sending = [r for r in file_records(config) if r[2] == "sending"]
        run.kill()
        check(len(sending) == 3, f"expected 3 files sending at the kill, records: {file_records(config)}")
        at_kill = rows_written(config)
        check(at_kill < 3 * rows, f"the kill did not land mid-stream ({at_kill} of {3 * rows} rows written)")
        for i, inbox in enumerate(inboxes):
            check(os.path.exists(os.path.join(inbox, f"sim_file{i + 1}.xlsx")), f"{inbox}: the file left the inbox before it was sent")
        again = Run(genetika, path, os.path.join(work, "again.log"), "--exit-when-done")
        check(again.wait(240) == 0, f"the second run exited with {again.process.returncode}: {again.text()[-1500:]}")
        text = again.text()
        check(text.count("was being sent when the stage or process stopped") == 3, "the second run does not say it sends the 3 files again")
        records = file_records(config)
        check(len(records) == 3 and all(r[2] == "done" and r[3] == rows for r in records),
              f"expected the 3 records done with {rows} rows each, found {records}")
        for i, inbox in enumerate(inboxes):
            check(os.path.exists(os.path.join(inbox, "done", f"sim_file{i + 1}.xlsx")), f"{inbox}: the file is not in done/")
        files = subprocess.run([genetika, "files", "--config", path, "--json"], capture_output=True, text=True, check=True)
        listed = json.loads(files.stdout)
        check([r["status"] for r in listed] == ["done"] * 3, f"genetika files --json: {files.stdout[:400]}")
        check_complete(genetika, path, config, work, rows)
        return f"killed at {at_kill} of {3 * rows} rows with 3 files sending; resent under the same records; exact rows and acks"
    finally:
        broker.kill()


def supervisor_gives_up(genetika, work):
    """A spreadsheet corrupt halfway: the producer fails, its retries resend only that file
    (the healthy ones are not sent again), and when the supervisor gives up the process exits
    with status 1 and the file's error — promptly, although the other stages are healthy."""
    rows = 3000
    broker = Broker(work)
    try:
        data = generate(genetika, work, rows)
        corrupt_middle(os.path.join(data, "sim_file2.xlsx"))
        path, config = make_config(work, "run", broker, data, stages__supervisor__maxRestarts=2)
        run, text = run_to_failure(genetika, path, work, 90)
        check("giving up" in text and "sim_file2.xlsx" in text, f"the last lines do not name the failing file: {text[-800:]}")
        sent_before = re.findall(r"sim_file2.xlsx: failed after (\d+) rows", text)
        check(sent_before, "no line reports how many rows of the failed file were sent")
        summary = report(genetika, path, os.path.join(work, "report"))
        check(summary["events"]["topic1"] == rows and summary["events"]["topic3"] == rows,
              f"healthy files were sent again: events per topic {summary['events']} for {rows} rows each")
        elapsed = time.monotonic() - run.started
        return f"exit 1 after {elapsed:.1f} s; topic1/topic3 hold {rows} events each (not resent); sim_file2 rows sent per attempt {sent_before}"
    finally:
        broker.kill()


def disk_full(genetika, work):
    """The SQLite database sits on a full file system: the DB stage fails, the supervisor
    gives up and the process exits 1 with SQLite's own words."""
    rows = 8000
    broker = Broker(work)
    mount = os.path.join(work, "small")
    os.makedirs(mount)
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", mount], capture_output=True, text=True)
    check(result.returncode == 0, f"cannot mount a small tmpfs (needs root): {result.stderr}")
    try:
        data = generate(genetika, work, rows)
        path, config = make_config(work, "run", broker, data, database__url=f"sqlite://{mount}/genetika.db",
                                   stages__supervisor__maxRestarts=2)
        run, text = run_to_failure(genetika, path, work, 120)
        check("database or disk is full" in text, "the log does not say the disk is full")
        check("stage db failed 3 times" in text, f"the supervisor did not give up on the db stage: {text[-800:]}")
        return f"exit 1 after {time.monotonic() - run.started:.1f} s: 'database or disk is full'"
    finally:
        subprocess.run(["umount", "-l", mount])
        broker.kill()


def second_instance_refused(genetika, work):
    """A second `genetika run` on the same SQLite database and state directory refuses to
    start and names the process that holds them; the first carries on and stops cleanly."""
    rows = 2000
    broker = Broker(work)
    try:
        data = generate(genetika, work, rows)
        path, config = make_config(work, "run", broker, data)
        first = Run(genetika, path, os.path.join(work, "first.log"))
        wait_for(lambda: "db assigned" in first.text(), 60, "the first process to get its partitions")
        config2 = dict(config)
        config2["observability"] = {"host": "127.0.0.1", "port": free_port()}
        path2 = os.path.join(work, "second.json")
        json.dump(config2, open(path2, "w"))
        second = Run(genetika, path2, os.path.join(work, "second.log"))
        code = second.wait(30)
        text = second.text()
        check(code == 1, f"the second process exited with {code}, expected 1: {text[-800:]}")
        check(f"another Genetika instance (pid {first.process.pid})" in text, f"the refusal does not name the holder: {text[-800:]}")
        wait_for(lambda: rows_written(config) == 3 * rows, 120, "the first process to write every row")
        first.process.send_signal(signal.SIGTERM)
        check(first.wait(30) == 0, f"the first process did not stop cleanly: {first.text()[-800:]}")
        line = next(l for l in text.splitlines() if "another Genetika instance" in l)
        return line.split("cannot start: ", 1)[-1][:160] + "…"
    finally:
        broker.kill()


def dead_letter_counts_agree(genetika, work):
    """Rows rejected for a text value in an integer column: the per-file line, the totals
    line, /metrics and the run summary give the same count."""
    broker = Broker(work)
    try:
        fixtures = os.path.join(ROOT, "Fixtures")
        # diagnosis holds text in sim_file1: typed as an integer, each row with one is rejected.
        path, config = make_config(work, "run", broker, fixtures)
        for column in config["sources"][0]["columns"]:
            if column["name"] == "diagnosis":
                column["type"] = "integer"
        json.dump(config, open(path, "w"))
        run = Run(genetika, path, os.path.join(work, "run.log"), "--summary", os.path.join(work, "summary.json"))
        port = config["observability"]["port"]
        line = wait_for(lambda: re.search(r"sim_file1.xlsx: (\d+) rows sent to topic1, (\d+) of them dead-lettered", run.text()),
                        60, "the per-file line")
        per_file = int(line.group(2))
        check(per_file > 0, "no row was rejected")
        wait_for(lambda: "producer finished" in run.text(), 60, "the producer to finish")
        status, text = http_get(port, "/metrics")
        check(status == 200, "/metrics did not answer")
        in_metrics = metric(text, "genetika_dead_lettered_total", 'stage="producer"')
        check(in_metrics == per_file, f"/metrics says {in_metrics} dead-lettered by the producer, the file line {per_file}")
        rejected = metric(text, "genetika_rows_rejected_total")
        check(rejected == per_file, f"/metrics says {rejected} rows rejected, the file line {per_file}")
        run.process.send_signal(signal.SIGTERM)
        check(run.wait(30) == 0, "genetika did not stop cleanly")
        totals = re.search(r"dead-lettered (\d+) \(producer (\d+), db (\d+), acker (\d+)\)", run.text())
        check(totals and int(totals.group(1)) == per_file and int(totals.group(2)) == per_file,
              f"totals line disagrees: {totals.group(0) if totals else 'missing'}")
        summary = json.load(open(os.path.join(work, "summary.json")))
        check(summary["dead_lettered"] == per_file and summary["dead_lettered_by_stage"]["producer"] == per_file,
              f"summary disagrees: {summary['dead_lettered']} / {summary['dead_lettered_by_stage']}")
        return f"{per_file} rejected rows: file line, totals, /metrics and summary agree"
    finally:
        broker.kill()


def stuck_stage_reported(genetika, work):
    """Another process holds a write lock on the SQLite database while events arrive: the DB
    stage cannot commit, and /health (503, with the reason) and /metrics say it is stuck;
    once the lock is gone it catches up and /health is 200 again."""
    rows = 3000
    broker = Broker(work)
    try:
        data = generate(genetika, work, rows)
        path, config = make_config(work, "run", broker, data, observability__stuckAfterSeconds=2,
                                   stages__producer__ratePerSecond=1000)
        run = Run(genetika, path, os.path.join(work, "run.log"))
        port = config["observability"]["port"]
        wait_for(lambda: rows_written(config) > 0, 60, "the first rows written")
        holder = sqlite3.connect(config["database"]["url"][len("sqlite://"):], timeout=10, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            stuck = wait_for(lambda: (lambda r: r if r[0] == 503 and "stage db is stuck" in r[1] else None)(http_get(port, "/health")),
                             8, "/health to report the DB stage stuck")
            gauge = metric(http_get(port, "/metrics")[1], "genetika_stage_healthy", 'stage="db"')
            check(gauge == 0, f"genetika_stage_healthy{{stage=\"db\"}} is {gauge} while stuck, expected 0")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        wait_for(lambda: rows_written(config) == 3 * rows, 120, "every row written after the lock was released")
        wait_for(lambda: http_get(port, "/health")[0] == 200, 30, "/health to be 200 again")
        run.process.send_signal(signal.SIGTERM)
        check(run.wait(30) == 0, "genetika did not stop cleanly")
        reason = json.loads(stuck[1])["problems"][0]
        return f"while locked: {reason}"
    finally:
        broker.kill()


def signals_and_stop_timeout(genetika, work):
    """SIGTERM mid-stream: exit 0, and every table's rows match the offsets stored with them
    (no half batch). With the DB stage blocked (another process holds the database), a second
    SIGTERM exits at once (130), and with one signal --stop-timeout bounds the wait (exit 1)."""
    # Enough rows that the whole stream takes seconds even at the pipeline's full rate: with
    # 3 × 8,000 the run sometimes finished between two polls of the row count.
    rows = 40000
    broker = Broker(work)
    try:
        data = generate(genetika, work, rows)
        path, config = make_config(work, "run", broker, data)
        run = Run(genetika, path, os.path.join(work, "run.log"))
        wait_for(lambda: rows_written(config) >= 3 * rows // 5, 120, "a fifth of the rows written")
        run.process.send_signal(signal.SIGTERM)
        began = time.monotonic()
        check(run.wait(20) == 0, f"SIGTERM mid-stream: exit {run.process.returncode}: {run.text()[-800:]}")
        stopped = time.monotonic() - began
        db = sqlite3.connect(config["database"]["url"][len("sqlite://"):])
        written = 0
        for source in config["sources"]:
            count = db.execute(f'SELECT count(*) FROM "{source["table"]}"').fetchone()[0]
            offsets = db.execute("SELECT coalesce(sum(next_offset), 0) FROM genetika_offsets WHERE consumer_group = ? AND topic = ?",
                                 (config["stages"]["db"]["groupId"], source["topic"])).fetchone()[0]
            check(count == offsets, f"{source['table']}: {count} rows but stored offsets cover {offsets} events")
            written += count
        db.close()
        check(0 < written < 3 * rows, f"the stop did not land mid-stream ({written} rows)")
        acker = sqlite3.connect(os.path.join(config["stateDirectory"], "acker.db"))
        recorded = acker.execute("SELECT count(*) FROM acker_acked").fetchone()[0]
        acker.close()
        summary = report(genetika, path, os.path.join(work, "report"))
        check(summary["acks"] == recorded and not summary["duplicate_acks"],
              f"acks in the topic {summary['acks']}, recorded by the acker {recorded}")

        # The DB stage cannot commit while another process holds the database: stopping waits.
        database = config["database"]["url"][len("sqlite://"):]

        def blocked_run(log, *args):
            run = Run(genetika, path, os.path.join(work, log), *args)
            wait_for(lambda: "db assigned" in run.text(), 60, "the DB stage to get its partitions")
            holder = sqlite3.connect(database, timeout=10, isolation_level=None)
            holder.execute("BEGIN EXCLUSIVE")
            # The producer resends the files: the DB stage's next batch waits for the lock.
            port = json.load(open(path))["observability"]["port"]
            # Busy for a second or more: a batch blocked on the lock, not one that was finishing
            # when the lock was taken (seen on a loaded machine: the stop then had nothing to wait for).
            # The write runs beside the stage (write-behind): the stage waits for it in its next
            # batch, or, with no events left, on its own.
            wait_for(lambda: re.search(r'"busy":"(handling a batch of \d+ events|waiting for the database to commit a batch) for [1-9]',
                                       http_get(port, "/health")[1]),
                     30, "the DB stage blocked in a batch")
            return run, holder

        run, holder = blocked_run("second.log")
        try:
            run.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            check(run.process.poll() is None, "genetika stopped although its DB stage was blocked")
            run.process.send_signal(signal.SIGTERM)
            code = run.wait(5)
            check(code == 130 and "second signal" in run.text(), f"a second signal: exit {code}, expected 130 at once")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        run, holder = blocked_run("third.log", "--stop-timeout", "2")
        try:
            run.process.send_signal(signal.SIGTERM)
            began_timeout = time.monotonic()
            code = run.wait(15)
            waited = time.monotonic() - began_timeout
            check(code == 1 and "did not stop within 2 s" in run.text(), f"--stop-timeout 2: exit {code} after {waited:.1f} s")
            check(waited < 6, f"--stop-timeout 2 took {waited:.1f} s")
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return (f"SIGTERM mid-stream: exit 0 in {stopped:.1f} s with {written} rows matching their offsets; "
                f"second signal: 130; --stop-timeout 2: exit 1 after {waited:.1f} s")
    finally:
        broker.kill()


def report_on_empty_and_missing_topics(genetika, work):
    """`genetika report` on topics with no events says so and writes an empty summary; on a
    topic that does not exist it fails naming the topic."""
    broker = Broker(work)
    try:
        path, config = make_config(work, "run", broker, os.path.join(ROOT, "Fixtures"))
        out = os.path.join(work, "report")
        result = subprocess.run([genetika, "report", "--config", path, "--out", out], capture_output=True, text=True, timeout=120)
        check(result.returncode == 0, f"report on empty topics failed: {result.stdout[-400:]} {result.stderr[-400:]}")
        summary = json.load(open(os.path.join(out, "summary.json")))
        check(summary["ids"] == 0 and summary["acks"] == 0 and summary["delay_ms"] is None, f"empty topics: {summary}")
        check("ids: 0" in result.stdout, f"the output does not say there are no ids: {result.stdout[-300:]}")
        config["sources"][2]["topic"] = "topic-that-is-not-there"
        json.dump(config, open(path, "w"))
        result = subprocess.run([genetika, "report", "--config", path, "--out", out], capture_output=True, text=True, timeout=120)
        check(result.returncode != 0, "report on a missing topic succeeded")
        check("topic-that-is-not-there" in result.stdout + result.stderr, f"the error does not name the topic: {result.stderr[-400:]}")
        return "empty topics: ids 0, no delay; a missing topic is named: " + (result.stderr.strip().splitlines() or [""])[-1][:120]
    finally:
        broker.kill()


def secrets_never_printed(genetika, work):
    """A configuration with secrets (a password in the database URL, one in a password file,
    secret Kafka properties): check-config, a whole run (its log, /health, --summary) and a run
    that fails to reach the database show each as *** and never in clear."""
    from genetika_cluster import Postgres
    secrets = ["url-Secret-71", "file-Secret-72", "kafka-Secret-73", "keypass-Secret-74"]
    broker = Broker(work)
    pg = Postgres(work)   # trust authentication: any password is accepted
    try:
        data = generate(genetika, work, 300)
        url = pg.url.replace("genetika@", f"genetika:{secrets[0]}@")
        path, config = make_config(work, "run", broker, data, database__url=url)
        config["kafka"]["properties"]["sasl.password"] = secrets[2]
        config["kafka"]["properties"]["ssl.key.password"] = secrets[3]
        json.dump(config, open(path, "w"), indent=2)
        outputs = {}
        checked = subprocess.run([genetika, "check-config", "--config", path], capture_output=True, text=True, timeout=30)
        outputs["check-config"] = checked.stdout + checked.stderr
        check("***" in checked.stdout and "sasl.password = ***" in checked.stdout, f"check-config does not mask: {checked.stdout}")
        summary = os.path.join(work, "summary.json")
        run = Run(genetika, path, os.path.join(work, "run.log"), "--exit-when-done", "--summary", summary)
        port = config["observability"]["port"]
        health = wait_for(lambda: http_get(port, "/health")[1] or None, 60, "/health")
        check(run.wait(180) == 0, f"the run failed: {run.text()[-1500:]}")
        outputs["run log"] = run.text()
        outputs["/health"] = health
        outputs["--summary"] = open(summary).read()
        # A password from a file, and a database that refuses: the error names the URL masked.
        open(os.path.join(work, "pw.txt"), "w").write(secrets[1] + "\n")
        config["database"] = {"url": "postgres://genetika@127.0.0.1:1/postgres", "passwordFile": "pw.txt", "connectTimeoutMs": 0}
        json.dump(config, open(path, "w"), indent=2)
        failing = Run(genetika, path, os.path.join(work, "failing.log"), "--stages", "db")
        check(failing.wait(120) != 0, "a run against a database that refuses connections did not fail")
        outputs["failing run"] = failing.text()
        check("127.0.0.1:1" in failing.text(), f"the failing run does not name the database: {failing.text()[-600:]}")
        for name, text in outputs.items():
            for secret in secrets:
                check(secret not in text, f"{name} shows the secret {secret}")
        return f"{len(secrets)} secrets, none in check-config, the run's log, /health, --summary or a failing run's error ({sum(len(t) for t in outputs.values())} bytes read)"
    finally:
        broker.kill()
        pg.stop()


def dead_letters_replayed(genetika, work):
    """Rows dead-lettered by the producer keep their cells; `genetika dead-letters` lists them
    with file, row, stage and reason; after the configuration is fixed, `--replay` sends exactly
    the rows that now pass, once (a second replay sends nothing), and lists the others with
    their new reason."""
    from genetika_cluster.xlsx import write_xlsx
    broker = Broker(work)
    try:
        data = os.path.join(work, "data")
        os.makedirs(data)
        header = ["id", "age", "sex", "weight_kg", "bmi", "diagnosis", "phq9", "enrolled_on"]
        rows = [header]
        for i in range(1, 21):
            age = None if i in (5, 9, 13) else ("abc" if i == 17 else 30 + i)
            rows.append([i, age, "F", 60.5, 22.0, "MDD", 3, "2024-01-02"])
        write_xlsx(os.path.join(data, "sim_file1.xlsx"), "intake", rows)
        path, config = make_config(work, "run", broker, data)
        config["sources"] = config["sources"][:1]
        config["sources"][0]["columns"][1]["nullable"] = False   # age required: rows 5, 9, 13 are dead-lettered
        json.dump(config, open(path, "w"), indent=2)
        producer = Run(genetika, path, os.path.join(work, "producer.log"), "--stages", "producer", "--exit-when-done")
        check(producer.wait(120) == 0, f"the producer failed: {producer.text()[-800:]}")

        def dead_letters(*args):
            result = subprocess.run([genetika, "dead-letters", "--config", path, *args], capture_output=True, text=True, timeout=120)
            check(result.returncode == 0, f"dead-letters {args} failed: {result.stderr[-800:]}")
            return result.stdout

        listed = sorted(json.loads(dead_letters("--json")), key=lambda d: d["row"])   # keyless: spread over partitions
        check([(d["row"], d["stage"]) for d in listed] == [(6, "producer"), (10, "producer"), (14, "producer"), (18, "producer")],
              f"listed dead letters: {listed}")
        check(all(d["file"].endswith("sim_file1.xlsx") and d["topic"] == "topic1" and d["when"] for d in listed), f"listed: {listed}")
        check("age: a value is required" in listed[0]["reason"] and "abc" in listed[3]["reason"], f"reasons: {[d['reason'] for d in listed]}")
        # The fix: age may be empty. Rows 6, 10 and 14 pass now; row 18 (age "abc") still fails.
        config["sources"][0]["columns"][1]["nullable"] = True
        json.dump(config, open(path, "w"), indent=2)
        first = json.loads(dead_letters("--replay", "--json"))
        outcomes = sorted((d["row"], d["outcome"]) for d in first)
        check(outcomes == [(6, "sent"), (10, "sent"), (14, "sent"), (18, "still failing")], f"first replay: {outcomes}")
        check("expected integer" in [d for d in first if d["row"] == 18][0]["new_reason"], f"row 18: {first}")
        second = json.loads(dead_letters("--replay", "--json"))
        outcomes = sorted((d["row"], d["outcome"]) for d in second)
        check(outcomes == [(6, "replayed before"), (10, "replayed before"), (14, "replayed before"), (18, "still failing")],
              f"second replay: {outcomes}")
        summary = report(genetika, path, os.path.join(work, "report"))
        # 16 rows went through at first, 3 more by the replay, each once; id 17 (row 18) never.
        check(summary["events"]["topic1"] == 19, f"topic1 holds {summary['events']['topic1']} events, expected 16 + 3 replayed")
        check(summary["ids"] == 19, f"{summary['ids']} ids in topic1, expected 19 (all but id 17)")
        return "4 dead letters listed with file, row and reason; after the fix 3 sent once, 1 still failing with its new reason; topic1 has 16 + 3 events"
    finally:
        broker.kill()


def schema_evolves(genetika, work):
    """A column added to the configuration is added to the existing table (logged once; old rows
    NULL); a column whose type changed is refused at start-up with exit 2 and the column's diff,
    before anything is sent or written."""
    broker = Broker(work)
    try:
        data = generate(genetika, work, 200)
        path, config = make_config(work, "run", broker, data)
        first = Run(genetika, path, os.path.join(work, "first.log"), "--exit-when-done")
        check(first.wait(180) == 0, f"the first run failed: {first.text()[-800:]}")
        # A type change: refused, exit 2, with the diff; nothing read or written.
        config["sources"][0]["columns"][1]["type"] = "text"
        json.dump(config, open(path, "w"), indent=2)
        refused = Run(genetika, path, os.path.join(work, "refused.log"), "--exit-when-done")
        check(refused.wait(120) == 2, f"a changed type: exit {refused.process.returncode}, expected 2: {refused.text()[-800:]}")
        check("data1.age: in the database INTEGER; in the config TEXT" in refused.text(), f"no diff: {refused.text()[-800:]}")
        check("read 0 rows" in refused.text() or "totals" not in refused.text(), "the refused run read rows")
        # A new nullable column: added, logged once, old rows NULL.
        config["sources"][0]["columns"][1]["type"] = "integer"
        config["sources"][0]["columns"].append({"name": "site", "type": "text"})
        json.dump(config, open(path, "w"), indent=2)
        added = Run(genetika, path, os.path.join(work, "added.log"), "--stages", "db", "--exit-when-done")
        check(added.wait(120) == 0, f"the run with a new column failed: {added.text()[-800:]}")
        check(added.text().count("added column site") == 1, f"the addition is not logged once: {added.text()[-800:]}")
        db = sqlite3.connect(config["database"]["url"][len("sqlite://"):])
        columns = [row[1] for row in db.execute('PRAGMA table_info("data1")')]
        nulls = db.execute('SELECT count(*) FROM data1 WHERE site IS NULL').fetchone()[0]
        db.close()
        check(columns[-1] == "site" and nulls == 200, f"data1 columns {columns}, {nulls} rows with site NULL")
        return "a changed type refused with exit 2 and its diff; a new column added once, 200 old rows NULL"
    finally:
        broker.kill()


SCENARIOS = [schema_evolves, secrets_never_printed, dead_letters_replayed, broker_outage_keeps_data, broker_restart_loses_data, inbox_killed_while_sending, supervisor_gives_up, disk_full,
             second_instance_refused, dead_letter_counts_agree, stuck_stage_reported, signals_and_stop_timeout,
             report_on_empty_and_missing_topics]


def main():
    genetika = os.path.abspath(sys.argv[1])
    wanted = sys.argv[2:]
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    passed = failed = 0
    for scenario in SCENARIOS:
        if wanted and scenario.__name__ not in wanted:
            continue
        work = tempfile.mkdtemp(prefix=f"genetika-fault-{scenario.__name__}-")
        start = time.monotonic()
        started_at = time.time()
        try:
            detail = scenario(genetika, work)
            passed += 1
            print(f"[faults] PASS {scenario.__name__} ({time.monotonic() - start:.0f} s): {detail}", flush=True)
            shutil.rmtree(work, ignore_errors=True)
        except Exception as error:  # a failed check, or anything unexpected
            failed += 1
            kind = "" if isinstance(error, Failed) else traceback.format_exc()
            print(f"[faults] FAIL {scenario.__name__} ({time.monotonic() - start:.0f} s): {error}\n{kind}"
                  f"[faults]   work directory kept: {work}{crash_report(genetika, work, started_at)}", flush=True)
        finally:
            for run in RUNS:
                run.kill()
            RUNS.clear()
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
