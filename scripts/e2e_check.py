#!/usr/bin/env python3
"""Assertions of `make e2e` on the database and on `genetika report`'s summary.json.

seed:  every table holds exactly the spreadsheet's rows, value for value (expected values
       from Fixtures/*.expected.json, written by openpyxl), and the acks are complete.
acks:  only the ack checks (scale-out, whose tables are in PostgreSQL).
crash: every table holds exactly the generated spreadsheets' rows, value for value (read
       with openpyxl, so that a Genetika bug cannot hide in the oracle), and exactly one ack
       per id, sent after all three of its events, on its id's partition number.
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


def openpyxl_rows(path, sheet):
    """The sheet's rows as [header, *data] (cell values as openpyxl gives them)."""
    import openpyxl
    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    rows = [list(row) for row in book[sheet].iter_rows(values_only=True)]
    book.close()
    return rows


def native_value(cell, column_type):
    """An openpyxl cell value as the DB stage must store it."""
    import datetime
    if cell is None or cell == "NA" or cell == "":
        return None
    if column_type == "date" and isinstance(cell, (datetime.date, datetime.datetime)):
        return cell.strftime("%Y-%m-%d")
    if column_type == "datetime" and isinstance(cell, datetime.datetime):
        return cell.isoformat()
    if column_type == "boolean":
        return 1 if cell in (True, 1, "TRUE", "true") else 0
    if column_type == "real":
        return float(cell)
    if column_type == "integer":
        return int(cell)
    return cell


def check_acks(summary, rows):
    check(summary["acks"] == rows, f"expected {rows} acks, found {summary['acks']}")
    check(summary["acked_ids"] == rows, f"expected {rows} acked ids, found {summary['acked_ids']}")
    check(summary["ids"] == rows, f"expected {rows} ids in the topics, found {summary['ids']}")
    check(not summary["duplicate_acks"], f"duplicate acks: {summary['duplicate_acks'][:20]}")
    check(not summary["missing_ack"], f"ids without an ack: {summary['missing_ack'][:20]}")
    check(not summary["missing_from_topic"], f"ids missing from a topic: {summary['missing_from_topic']}")
    check(not summary["acks_before_latest_event"], f"acks before their latest event: {summary['acks_before_latest_event'][:20]}")
    check(not summary["acks_not_matching_topics"],
          f"acks whose events are not in the topics (sent before all three arrived?): {summary['acks_not_matching_topics'][:20]}")
    check(not summary["acks_on_wrong_partition"], f"acks not on their id's partition number: {summary['acks_on_wrong_partition'][:20]}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["seed", "crash", "acks"])
    parser.add_argument("--config")
    parser.add_argument("--database")
    parser.add_argument("--summary", required=True)
    parser.add_argument("--fixtures")
    parser.add_argument("--rows", type=int, required=True)
    parser.add_argument("--spreadsheets", help="crash mode: the generated spreadsheets, read with openpyxl")
    args = parser.parse_args()
    summary = json.load(open(args.summary))
    if args.mode == "acks":  # the acks alone (scale-out keeps its tables in PostgreSQL)
        check_acks(summary, args.rows)
        report_failures()
        return
    config = json.load(open(args.config))
    db = sqlite3.connect(args.database)

    for number, source in enumerate(config["sources"], 1):
        table, key = source["table"], source["key"]
        count = db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0]
        check(count == args.rows, f"{table}: expected {args.rows} rows, found {count}")
        ids = {row[0] for row in db.execute(f'SELECT "{key}" FROM "{table}"')}
        check(ids == set(range(1, args.rows + 1)), f"{table}: ids are not exactly 1..{args.rows}")
        # An inbox source (no file) was given the seed's file of the same position.
        name = (source.get("file") or f"sim_file{number}.xlsx").split("/")[-1].replace(".xlsx", "")
        columns = source["columns"]
        names = ", ".join(f'"{c["name"]}"' for c in columns)
        stored = {row[0]: row for row in db.execute(f'SELECT {names} FROM "{table}"')}
        if args.mode == "seed":
            expected = json.load(open(f"{args.fixtures}/{name}.expected.json"))
            header, *data = expected["rows"]
            convert = expected_value
        else:
            header, *data = openpyxl_rows(f"{args.spreadsheets}/{name}.xlsx", source.get("sheet"))
            convert = native_value
        compared = 0
        for cells in data:
            by_header = dict(zip(header, cells))
            want = tuple(convert(by_header.get(c.get("header", c["name"])), c["type"]) for c in columns)
            have = stored.get(want[0])
            check(have == want, f"{table} id {want[0]}: stored {have}, spreadsheet {want}")
            compared += 1
        check(compared == args.rows, f"{table}: the spreadsheet has {compared} data rows, expected {args.rows}")
        print(f"[e2e]   {table}: {count} rows, all {compared} equal to {name}.xlsx")

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
    report_failures()


def report_failures():
    if failures:
        for failure in failures[:50]:
            print(f"[e2e] FAIL: {failure}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
