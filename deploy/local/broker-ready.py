#!/usr/bin/env python3
"""Wait until a Kafka-protocol broker really answers Metadata requests.

Usage: broker-ready.py HOST:PORT [--timeout SECS] [--quiet]

Standard library only. Each attempt opens a TCP connection and sends
  1. ApiVersions v0 (supported by every Kafka version, incl. 4.x, and tansu),
  2. Metadata vN, with N the highest version that both the broker (as told by
     ApiVersions) and this script (v1..v12) support; topics = null (all topics),
     allow_auto_topic_creation = false,
and parses the response far enough to read the broker list. The broker counts
as ready once at least one broker is listed. Exit status: 0 ready, 1 timeout,
2 usage error.

Apache Kafka 4.0 removed Metadata v0..v3 (KIP-896), so a fixed old version
cannot be used; negotiating through ApiVersions keeps this working for both
Kafka 4.x and tansu.
"""

import argparse
import socket
import struct
import sys
import time

API_METADATA = 3
API_VERSIONS = 18
OUR_METADATA_MIN, OUR_METADATA_MAX = 1, 12
CLIENT_ID = b"kizuna-broker-ready"
PREFIX = "[kizuna-stack]"


class ProtocolError(Exception):
    pass


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise ProtocolError("response truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int8(self):
        return struct.unpack(">b", self.take(1))[0]

    def int16(self):
        return struct.unpack(">h", self.take(2))[0]

    def int32(self):
        return struct.unpack(">i", self.take(4))[0]

    def uvarint(self):
        shift = 0
        value = 0
        while True:
            b = self.take(1)[0]
            value |= (b & 0x7F) << shift
            if not b & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise ProtocolError("varint too long")

    def string(self):  # nullable STRING (int16 length)
        n = self.int16()
        return None if n < 0 else self.take(n).decode("utf-8", "replace")

    def compact_string(self):  # COMPACT_NULLABLE_STRING (uvarint length + 1)
        n = self.uvarint() - 1
        return None if n < 0 else self.take(n).decode("utf-8", "replace")

    def tagged_fields(self):
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())  # size + data


def uvarint(value):
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ProtocolError("connection closed by broker")
        buf.extend(chunk)
    return bytes(buf)


def roundtrip(sock, api_key, version, correlation_id, body, flexible):
    header = struct.pack(">hhih", api_key, version, correlation_id, len(CLIENT_ID)) + CLIENT_ID
    if flexible:
        header += b"\x00"  # request header v2: empty tagged fields
    payload = header + body
    sock.sendall(struct.pack(">i", len(payload)) + payload)
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    if size < 4 or size > 64 * 1024 * 1024:
        raise ProtocolError(f"implausible response size {size}")
    r = Reader(recv_exact(sock, size))
    got = r.int32()
    if got != correlation_id:
        raise ProtocolError(f"correlation id mismatch ({got} != {correlation_id})")
    # ApiVersions responses always use header v0; other flexible responses use v1.
    if flexible and api_key != API_VERSIONS:
        r.tagged_fields()
    return r


def api_versions(sock):
    r = roundtrip(sock, API_VERSIONS, 0, 1, b"", flexible=False)
    error = r.int16()
    count = r.int32()
    ranges = {}
    for _ in range(max(count, 0)):
        key, lo, hi = r.int16(), r.int16(), r.int16()
        ranges[key] = (lo, hi)
    if error != 0:
        raise ProtocolError(f"ApiVersions v0 error code {error}")
    return ranges


def metadata_request_body(version):
    flexible = version >= 9
    if flexible:
        body = uvarint(0)  # null compact array = all topics
    else:
        body = struct.pack(">i", -1)  # null array = all topics
    if version >= 4:
        body += b"\x00"  # allow_auto_topic_creation = false
    if 8 <= version <= 10:
        body += b"\x00"  # include_cluster_authorized_operations
    if version >= 8:
        body += b"\x00"  # include_topic_authorized_operations
    if flexible:
        body += b"\x00"  # tagged fields
    return body


def metadata(sock, version):
    flexible = version >= 9
    r = roundtrip(sock, API_METADATA, version, 2, metadata_request_body(version), flexible)
    if version >= 3:
        r.int32()  # throttle_time_ms
    n = (r.uvarint() - 1) if flexible else r.int32()
    brokers = []
    for _ in range(max(n, 0)):
        node_id = r.int32()
        host = r.compact_string() if flexible else r.string()
        port = r.int32()
        if version >= 1:
            if flexible:
                r.compact_string()  # rack
            else:
                r.string()
        if flexible:
            r.tagged_fields()
        brokers.append((node_id, host, port))
    cluster_id = None
    if version >= 2:
        cluster_id = r.compact_string() if flexible else r.string()
    controller_id = r.int32() if version >= 1 else None
    return brokers, cluster_id, controller_id


def probe(host, port, timeout, forced_version=None):
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        ranges = api_versions(sock)
        if API_METADATA not in ranges:
            raise ProtocolError("broker does not advertise the Metadata API")
        lo, hi = ranges[API_METADATA]
        if forced_version is not None:
            version = forced_version
        else:
            version = min(hi, OUR_METADATA_MAX)
            if version < max(lo, OUR_METADATA_MIN):
                raise ProtocolError(
                    f"no common Metadata version (broker v{lo}..v{hi}, "
                    f"script v{OUR_METADATA_MIN}..v{OUR_METADATA_MAX})")
        brokers, cluster_id, controller_id = metadata(sock, version)
        return version, (lo, hi), brokers, cluster_id, controller_id


def parse_target(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def main():
    parser = argparse.ArgumentParser(description="Wait until a Kafka broker answers Metadata.")
    parser.add_argument("target", type=parse_target, metavar="HOST:PORT")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to keep trying (default 60)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between attempts")
    parser.add_argument("--metadata-version", type=int, default=None,
                        help="force a Metadata version (testing only)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    args = parser.parse_args()
    if args.metadata_version is not None and not (
            OUR_METADATA_MIN <= args.metadata_version <= OUR_METADATA_MAX):
        parser.error(f"--metadata-version must be {OUR_METADATA_MIN}..{OUR_METADATA_MAX}")

    host, port = args.target
    deadline = time.monotonic() + args.timeout
    last_error = "no attempt made"
    while True:
        attempt_timeout = max(1.0, min(5.0, deadline - time.monotonic()))
        try:
            version, (lo, hi), brokers, cluster_id, controller_id = probe(
                host, port, attempt_timeout, args.metadata_version)
            if brokers:
                if not args.quiet:
                    listed = ", ".join(f"{n}@{h}:{p}" for n, h, p in brokers)
                    print(f"{PREFIX} broker {host}:{port} ready: Metadata v{version} "
                          f"(broker supports v{lo}..v{hi}), brokers [{listed}], "
                          f"cluster id {cluster_id}, controller {controller_id}")
                return 0
            last_error = "Metadata response lists no broker yet"
        except (OSError, ProtocolError, struct.error) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            print(f"{PREFIX} ERROR: broker {host}:{port} not ready after {args.timeout:g}s "
                  f"(last error: {last_error})", file=sys.stderr)
            return 1
        time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())))


if __name__ == "__main__":
    sys.exit(main())
