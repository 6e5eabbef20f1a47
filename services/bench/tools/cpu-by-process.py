#!/usr/bin/env python3
"""CPU seconds of each drain of a running `kizuna-bench` (throughput or points scenario), split
into the engine process, PostgreSQL (every `postgres` process) and the Kafka broker (the `java`
process running Kafka). CPU time, not wall time: other work on the machine does not count.

usage:
  kizuna-bench points --points-rounds 2 2> bench.log &
  services/bench/tools/cpu-by-process.py bench.log

It follows the bench's log for "<label>: engine pid N", samples the processes' CPU counters
(/proc/<pid>/stat) every 0.3 s until that engine exits, and prints one line per drain. A
PostgreSQL backend that exits between two samples loses its last 0.3 s."""
import os
import re
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return None


def group_pids(kind):
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
            cmdline = open(f"/proc/{pid}/cmdline").read()
        except OSError:
            continue
        if (kind == "postgres" and comm == "postgres") or (
            kind == "broker" and comm == "java" and "kafka" in cmdline
        ):
            pids.append(pid)
    return pids


class Group:
    """CPU used by a group of processes since `start`: per process, the last value seen less
    the value at the start (0 for a process started since), so processes that come and go
    during the drain count for what they used in it."""

    def __init__(self, kind):
        self.kind = kind
        self.start = {p: cpu_seconds(p) or 0.0 for p in group_pids(kind)}
        self.last = dict(self.start)

    def sample(self):
        for p in group_pids(self.kind):
            c = cpu_seconds(p)
            if c is not None:
                self.start.setdefault(p, 0.0)
                self.last[p] = c

    def used(self):
        return sum(self.last[p] - self.start[p] for p in self.last)


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    log = sys.argv[1]
    seen = set()
    while True:
        text = open(log).read() if os.path.exists(log) else ""
        for m in re.finditer(r"([\w-]+): engine pid (\d+)", text):
            label, pid = m.group(1), m.group(2)
            if pid in seen:
                continue
            seen.add(pid)
            postgres, broker = Group("postgres"), Group("broker")
            last = None
            while (engine := cpu_seconds(pid)) is not None:
                postgres.sample()
                broker.sample()
                last = (engine, postgres.used(), broker.used())
                time.sleep(0.3)
            if last:
                print(
                    f"{label} (engine pid {pid}): engine {last[0]:.1f} s, "
                    f"postgres {last[1]:.1f} s, broker {last[2]:.1f} s of CPU",
                    flush=True,
                )
        if "with/without" in text or "\nscenario " in text:
            return
        time.sleep(0.3)


if __name__ == "__main__":
    main()
