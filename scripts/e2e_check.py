#!/usr/bin/env python3
"""Assertions of `make e2e` on the database and on `genetika report`'s summary.json.

seed:  every table holds exactly the spreadsheet's rows, value for value (expected values
       from Fixtures/*.expected.json, written by openpyxl), and the acks are complete.
crash: exact row counts, no duplicate row, exactly one ack per id.
"""
import argparse
import json
import sqlite3
import sys

failures = []


def check(condition, message):
    if not condition:
        failures.append(message)


def expected_value(cell, column_type):
    """A spreadsheet cell as the DB stage must store it."""
    if cell is None or cell == "NA":
        return None
    if column_type in ("date", "datetime") and isinstance(cell, dict):
        text = cell.get("datetime") or cell.get("date")
        return text[:10] if column_type == "date" else text
    if column_type == "boolean":
        return 1 if cell else 0
    if column_type == "real":
        return float(cell)
    return cell


def check_acks(summary, rows):
    check(summary["acks"] == rows, f"expected {rows} acks, found {summary['acks']}")
    check(summary["acked_ids"] == rows, f"expected {rows} acked ids, found {summary['acked_ids']}")
    check(summary["ids"] == rows, f"expected {rows} ids in the topics, found {summary['ids']}")
    check(not summary["duplicate_acks"], f"duplicate acks: {summary['duplicate_acks'][:20]}")
    check(not summary["missing_ack"], f"ids without an ack: {summary['missing_ack'][:20]}")
    check(not summary["missing_from_topic"], f"ids missing from a topic: {summary['missing_from_topic']}")
    check(not summary["acks_before_latest_event"], f"acks before their latest event: {summary['acks_before_latest_event'][:20]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["seed", "crash"])
    parser.add_argument("--config", required=True)
    parser.add_argument("--database", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--fixtures")
    parser.add_argument("--rows", type=int, required=True)
    args = parser.parse_args()
    config = json.load(open(args.config))
    summary = json.load(open(args.summary))
    db = sqlite3.connect(args.database)

    for source in config["sources"]:
        table, key = source["table"], source["key"]
        count, distinct = db.execute(f'SELECT count(*), count(DISTINCT "{key}") FROM "{table}"').fetchone()
        check(count == args.rows, f"{table}: expected {args.rows} rows, found {count}")
        check(distinct == count, f"{table}: {count - distinct} duplicate ids")
        ids = {row[0] for row in db.execute(f'SELECT "{key}" FROM "{table}"')}
        check(ids == set(range(1, args.rows + 1)), f"{table}: ids are not exactly 1..{args.rows}")
        if args.mode == "seed":
            name = source["file"].split("/")[-1].replace(".xlsx", "")
            expected = json.load(open(f"{args.fixtures}/{name}.expected.json"))
            header, *data = expected["rows"]
            columns = source["columns"]
            names = ", ".join(f'"{c["name"]}"' for c in columns)
            stored = {row[0]: row for row in db.execute(f'SELECT {names} FROM "{table}"')}
            compared = 0
            for cells in data:
                by_header = dict(zip(header, cells))
                want = tuple(expected_value(by_header.get(c.get("header", c["name"])), c["type"]) for c in columns)
                have = stored.get(want[0])
                check(have == want, f"{table} id {want[0]}: stored {have}, spreadsheet {want}")
                compared += 1
            print(f"[e2e]   {table}: {count} rows, all {compared} equal to {name}.xlsx")
        else:
            print(f"[e2e]   {table}: {count} rows, ids 1..{args.rows}, no duplicates")

    check_acks(summary, args.rows)
    report_dir = args.summary.rsplit("/", 1)[0]
    import xml.etree.ElementTree as ET
    svg = "{http://www.w3.org/2000/svg}"
    marks = sum(1 for c in ET.parse(f"{report_dir}/timestamps.svg").iter(f"{svg}circle") if c.get("class") == "mark")
    check(marks == 4 * args.rows, f"timestamps.svg: expected {4 * args.rows} marks (3 topics + ack per id), found {marks}")
    delay_marks = sum(1 for c in ET.parse(f"{report_dir}/delay.svg").iter(f"{svg}circle") if c.get("class") == "mark")
    check(delay_marks == args.rows, f"delay.svg: expected {args.rows} marks, found {delay_marks}")
    delay = summary.get("delay_ms") or {}
    print(f"[e2e]   acks: {summary['acks']} for {summary['acked_ids']} distinct ids; "
          f"ack delay p50 {delay.get('p50')} ms, p99 {delay.get('p99')} ms")
    if failures:
        for failure in failures[:50]:
            print(f"[e2e] FAIL: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
