#!/usr/bin/env python3
"""Wait until a Kafka broker really answers a Metadata request (and, optionally, until
given topics exist with a given partition count). Speaks the Kafka wire protocol
directly (Metadata v4), so it works against Apache Kafka and Tansu alike. No fixed sleeps:
it retries until the deadline and exits non-zero, saying why, if the broker never answers.

usage: kafka-wait.py HOST:PORT [--timeout S] [--topic NAME[:PARTITIONS] ...]
"""
import argparse
import socket
import struct
import sys
import time


def metadata(host: str, port: int, timeout: float) -> dict:
    """Return {topic: (error_code, partition_count)} from a Metadata v4 request."""
    client_id = b"genetika-wait"
    body = struct.pack(">i", -1) + struct.pack(">?", False)  # all topics, no auto-create
    header = struct.pack(">hhih", 3, 4, 1, len(client_id)) + client_id
    request = header + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(struct.pack(">i", len(request)) + request)
        size = struct.unpack(">i", read_exact(sock, 4))[0]
        data = read_exact(sock, size)
    reader = Reader(data)
    reader.int32()  # correlation id
    reader.int32()  # throttle time
    for _ in range(reader.int32()):  # brokers
        reader.int32(); reader.string(); reader.int32(); reader.string()
    reader.string()  # cluster id
    reader.int32()  # controller id
    topics = {}
    for _ in range(reader.int32()):
        error = reader.int16()
        name = reader.string()
        reader.int8()  # is_internal
        partitions = reader.int32()
        for _ in range(max(partitions, 0)):
            reader.int16(); reader.int32(); reader.int32()
            for _ in range(reader.int32()): reader.int32()
            for _ in range(reader.int32()): reader.int32()
        topics[name] = (error, max(partitions, 0))
    return topics


def read_exact(sock: socket.socket, n: int) -> bytes:
    chunks = b""
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed by broker")
        chunks += chunk
    return chunks


class Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, fmt: str):
        value = struct.unpack_from(fmt, self.data, self.pos)[0]
        self.pos += struct.calcsize(fmt)
        return value

    def int8(self): return self.take(">b")
    def int16(self): return self.take(">h")
    def int32(self): return self.take(">i")

    def string(self):
        n = self.int16()
        if n < 0:
            return None
        s = self.data[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("broker")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--topic", action="append", default=[])
    args = parser.parse_args()
    host, _, port = args.broker.rpartition(":")
    wanted = {}
    for spec in args.topic:
        name, _, parts = spec.partition(":")
        wanted[name] = int(parts) if parts else None
    deadline = time.monotonic() + args.timeout
    last = "no answer yet"
    while True:
        try:
            topics = metadata(host or "127.0.0.1", int(port), timeout=2.0)
            missing = [n for n, p in wanted.items()
                       if n not in topics or topics[n][0] != 0 or (p is not None and topics[n][1] != p)]
            if not missing:
                return 0
            last = "topics not ready: " + ", ".join(
                f"{n} (have {topics[n][1]} partitions)" if n in topics else f"{n} (absent)" for n in missing)
        except (OSError, ConnectionError, struct.error) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() >= deadline:
            print(f"kafka-wait: broker {args.broker} not ready after {args.timeout:.0f}s: {last}", file=sys.stderr)
            return 1
        time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
