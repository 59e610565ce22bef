#!/usr/bin/env python3
"""Soak the pool and forking echo servers under mixed, bounded load, and show that memory,
descriptors and threads/children stay flat (issue 7, "Fuzzing and soak").

Run it from the repository root:

    python3 scripts/soak.py                      # 10 minutes, pool and forking at once
    SOAK_SECONDS=60 python3 scripts/soak.py      # a short run
    python3 scripts/soak.py --sequential         # pool, then forking, each SOAK_SECONDS

It builds the release echo example and the load generator, starts
`target/release/examples/echo tcp 127.0.0.1:0 --mode pool|forking` (loopback only), and drives
each server with `socketserver-bench load` in a fixed cycle of phases: persistent connections
(`--mode tcp`) and a connection per request (`--mode tcp-connect`), small and large messages,
few and many clients, and an idle gap after each cycle, where every quantity should fall back
to its baseline. Every load run is bounded (at most 60 s, the load generator's own cap, and a
subprocess timeout), and so is the whole soak.

Each second it samples the server's VmRSS and Threads (/proc/PID/status), its open descriptors
(/proc/PID/fd) and its children (/proc/PID/task/*/children), writing one CSV per server to
--out (default target/soak/). At the end it writes a Markdown report (default
target/soak/report.md; `--report docs/soak.md` to refresh the committed one) with min/median/max
of each quantity per tenth of the run, and a flatness check comparing the first tenth with the
last. Nothing here runs under `cargo test`.
"""

import argparse
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Where cargo builds: CARGO_TARGET_DIR when set, as cargo itself reads it.
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
ECHO = TARGET / "release/examples/echo"
BENCH = TARGET / "release/socketserver-bench"

# The load cycle: (load mode, clients, message size, seconds). Then an idle gap.
CYCLE = [
    ("tcp", 16, 64, 20),
    ("tcp-connect", 8, 64, 15),
    ("tcp", 64, 4096, 20),
    ("tcp-connect", 32, 1024, 15),
    ("tcp", 4, 65536, 10),
]
IDLE_SECONDS = 5
QUANTITIES = ["rss_kb", "fds", "threads", "children"]


def read_status(pid):
    rss = threads = None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def count_children(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                total += len(f.read().split())
        except FileNotFoundError:
            pass
    return total


def sample(pid):
    rss, threads = read_status(pid)
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kb": rss, "fds": fds, "threads": threads, "children": count_children(pid)}


class Soak:
    """One server, its sampler and its load driver."""

    def __init__(self, mode, seconds, out, workers):
        self.mode = mode
        self.workers = workers
        self.seconds = seconds
        self.csv_path = out / f"soak-{mode}.csv"
        self.log_path = out / f"soak-{mode}-load.jsonl"
        self.phase = "start"
        self.rows = []
        self.loads = []
        self.failures = []
        self.server = None
        self.address = None

    def start_server(self):
        self.server = subprocess.Popen(
            [str(ECHO), "tcp", "127.0.0.1:0", "--mode", self.mode, "--workers", str(self.workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.server.stdout.readline().strip()
        if not line.startswith("serving on "):
            raise RuntimeError(f"{self.mode}: unexpected first line {line!r}")
        self.address = line.removeprefix("serving on ")

    def sampler(self, start, stop):
        with open(self.csv_path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["t"] + QUANTITIES + ["phase"])
            tick = 0
            while not stop.is_set():
                tick += 1
                t = time.monotonic() - start
                try:
                    values = sample(self.server.pid)
                except (FileNotFoundError, ProcessLookupError):
                    self.failures.append(f"server gone at t={t:.0f}s")
                    return
                row = {"t": round(t, 1), **values, "phase": self.phase}
                self.rows.append(row)
                writer.writerow([row["t"]] + [values[q] for q in QUANTITIES] + [self.phase])
                f.flush()
                stop.wait(max(0.0, start + tick - time.monotonic()))

    def drive(self, start):
        deadline = start + self.seconds
        while time.monotonic() < deadline:
            for load_mode, clients, size, seconds in CYCLE:
                left = deadline - time.monotonic()
                if left < 2:
                    break
                seconds = min(seconds, int(left) - 1, 60)
                self.phase = f"{load_mode}/c{clients}/{size}B"
                cmd = [str(BENCH), "load", "--mode", load_mode, "--target", self.address,
                       "-c", str(clients), "--size", str(size), "--duration", str(seconds)]
                try:
                    done = subprocess.run(cmd, capture_output=True, text=True,
                                          timeout=seconds + 30)
                except subprocess.TimeoutExpired:
                    self.failures.append(f"load timed out: {' '.join(cmd)}")
                    continue
                if done.returncode != 0:
                    self.failures.append(f"load failed ({done.returncode}): {done.stderr.strip()}")
                    continue
                report = json.loads(done.stdout.strip().splitlines()[-1])
                report.update(phase=self.phase, t=round(time.monotonic() - start, 1))
                self.loads.append(report)
                with open(self.log_path, "a") as f:
                    f.write(json.dumps(report) + "\n")
            self.phase = "idle"
            time.sleep(max(0.0, min(IDLE_SECONDS, deadline - time.monotonic())))

    def run(self):
        self.log_path.unlink(missing_ok=True)
        self.start_server()
        start = time.monotonic()
        stop = threading.Event()
        sampler = threading.Thread(target=self.sampler, args=(start, stop))
        sampler.start()
        try:
            self.drive(start)
        finally:
            stop.set()
            sampler.join()
            self.server.send_signal(signal.SIGTERM)
            try:
                code = self.server.wait(timeout=15)
                if code != 0:
                    self.failures.append(f"server exited {code} after SIGTERM")
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
                self.failures.append("server did not exit within 15 s of SIGTERM; killed")


def deciles(rows, seconds):
    """Rows grouped by tenth of the run."""
    groups = [[] for _ in range(10)]
    for row in rows:
        groups[min(9, int(row["t"] * 10 / max(seconds, 1)))].append(row)
    return groups


def summarize(soak):
    lines = [f"### `--mode {soak.mode}` ({len(soak.rows)} samples)", ""]
    header = "| tenth | " + " | ".join(f"{q} min / med / max" for q in QUANTITIES) + " |"
    lines += [header, "|" + "---|" * (len(QUANTITIES) + 1)]
    groups = deciles(soak.rows, soak.seconds)
    for i, group in enumerate(groups):
        if not group:
            continue
        cells = []
        for q in QUANTITIES:
            values = [r[q] for r in group]
            cells.append(f"{min(values)} / {statistics.median(values):g} / {max(values)}")
        lines.append(f"| {i * 10}-{i * 10 + 10}% | " + " | ".join(cells) + " |")
    lines.append("")
    idle = [r for r in soak.rows if r["phase"] == "idle"]
    if idle:
        lines.append("At the idle gaps (no client connected), in order of time:")
        lines.append("")
        for q in QUANTITIES:
            firsts = []
            last_phase_t = None
            for r in idle:
                # The last sample of each idle gap: the settled baseline.
                if last_phase_t is not None and r["t"] - last_phase_t > 1.5:
                    firsts.append(prev)
                prev, last_phase_t = r, r["t"]
            firsts.append(prev)
            lines.append(f"- {q}: " + ", ".join(str(r[q]) for r in firsts))
        lines.append("")
    requests = sum(load["requests"] for load in soak.loads)
    errors = sum(load["errors"] for load in soak.loads)
    lines.append(f"Load: {len(soak.loads)} runs, {requests} requests, {errors} errors.")
    verdict = flatness(groups)
    lines.append("")
    lines.append(f"Flatness (last tenth against the first): {verdict}")
    if soak.failures:
        lines.append("")
        lines.append("Failures: " + "; ".join(soak.failures))
    lines.append("")
    return "\n".join(lines)


def flatness(groups):
    first, last = groups[0], groups[-1]
    if not first or not last:
        return "not enough samples"
    notes = []
    for q in QUANTITIES:
        a = max(r[q] for r in first)
        b = max(r[q] for r in last)
        notes.append(f"{q} max {a} -> {b}")
    return "; ".join(notes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=int(os.environ.get("SOAK_SECONDS", 600)),
                        help="soak time per server (env SOAK_SECONDS; default 600)")
    parser.add_argument("--modes", default="pool,forking")
    parser.add_argument("--sequential", action="store_true",
                        help="one server after the other instead of both at once")
    parser.add_argument("--workers", type=int, default=72,
                        help="--workers for the servers: pool threads, or the most children; "
                        "above the largest client count (64) so no persistent client starves")
    parser.add_argument("--out", type=Path, default=ROOT / "target/soak")
    parser.add_argument("--report", type=Path, default=None,
                        help="where to write the Markdown report (default OUT/report.md)")
    parser.add_argument("--no-build", action="store_true")
    args = parser.parse_args()
    if not 1 <= args.seconds <= 3600:
        sys.exit("soak: --seconds must be between 1 and 3600")
    args.out.mkdir(parents=True, exist_ok=True)
    report = args.report or args.out / "report.md"

    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "--example", "echo"], cwd=ROOT, check=True)
        subprocess.run(["cargo", "build", "--release", "-p", "socketserver-bench"], cwd=ROOT,
                       check=True)

    soaks = [Soak(mode, args.seconds, args.out, args.workers) for mode in args.modes.split(",")]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if args.sequential:
        for soak in soaks:
            soak.run()
    else:
        threads = [threading.Thread(target=soak.run) for soak in soaks]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    command = " ".join(["python3", "scripts/soak.py"] + sys.argv[1:])
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True).stdout.strip()
    text = [
        "# Soak: pool and forking echo servers",
        "",
        f"Run: `SOAK_SECONDS={args.seconds} {command}`, started {started}, "
        f"{'one after the other' if args.sequential else 'both servers at once'}, "
        f"{args.seconds} s per server, `--workers {args.workers}`, on {os.cpu_count()} CPUs, "
        f"from `{ROOT}` at {revision}"
        f"{' with uncommitted changes' if dirty else ' (clean)'}, binaries in `{TARGET}`.",
        "",
        "Load cycle per server (then an idle gap of "
        f"{IDLE_SECONDS} s): "
        + ", ".join(f"`{m}` c={c} {s} B for {d} s" for m, c, s, d in CYCLE) + ".",
        "",
        "Sampled each second: VmRSS (kB), open descriptors, threads (Threads) and children.",
        f"CSV: `{os.path.relpath(soaks[0].csv_path, ROOT)}` and siblings.",
        "",
    ]
    text += [summarize(soak) for soak in soaks]
    report.write_text("\n".join(text))
    print(report.read_text())
    failed = any(soak.failures for soak in soaks)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
