"""Run every benchmark against its own embedded etcd and print one markdown table.

    python benchmarks/run.py            # the full run (a few minutes)
    python benchmarks/run.py --quick    # a smoke run (under a minute)
    python benchmarks/run.py --only 1,3 # some sections

Everything listens on loopback and is stopped before the command returns.  Numbers come from
contenders measured side by side in alternating rounds (medians), because the machine is
small and shared; see BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import REPO, Row, Settings  # noqa: E402

SECTIONS = {
    "1": ("discovery overhead", "bench_overhead", "discovery_overhead"),
    "2": ("cluster size", "bench_overhead", "cluster_size"),
    "3": ("reaction time", "bench_reaction", "reaction"),
    "4": ("failover under load", "bench_failover", "failover"),
    "5": ("registrar cost", "bench_registrar", "registrar_cost"),
    "6": ("string decoding", "bench_payload", "payload"),
    "7": ("CPU per call", "bench_cpu", "cpu_per_call"),
    "8": ("a domain of 100,000 servers", "bench_scale", "big_domain"),
    "9": ("watch through a rolling restart", "bench_scale", "watch_rolling"),
}


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%d cores (nproc), %s, Python %s, %s" % (
        len(os.sched_getaffinity(0)), model, platform.python_version(), platform.system())


def table(rows: list[Row]) -> str:
    lines = ["| section | measurement | result | target | met |",
             "|---|---|---|---|---|"]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append("| %s | %s | %s | %s | %s |" % (row.section, row.what, row.result,
                                                    row.target, met))
    return "\n".join(lines)


def transports_table(quick: bool) -> str | None:
    """The transport comparison of ``bench_transports.py``, when that script is present."""
    script = os.path.join(REPO, "benchmarks", "bench_transports.py")
    if not os.path.exists(script):
        return None
    command = [sys.executable, script] + (["--seconds", "0.3", "--rounds", "3"] if quick else [])
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return "bench_transports.py failed (%d):\n\n```\n%s\n```" % (done.returncode,
                                                                    done.stderr[-2000:])
    return done.stdout.strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short smoke run")
    parser.add_argument("--only", default=",".join(SECTIONS),
                        help="comma-separated sections to run (default: all): %s"
                             % ", ".join("%s=%s" % (k, v[0]) for k, v in SECTIONS.items()))
    parser.add_argument("--transports", action="store_true",
                        help="also run bench_transports.py and print its table")
    parser.add_argument("--json", help="also write every row (with raw rounds) to this file")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in SECTIONS]
    if unknown:
        parser.error("unknown section(s) %s; choose from %s" % (unknown, ", ".join(SECTIONS)))
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    settings = Settings.make(args.quick)

    import importlib

    from hprose_cluster.embedded import EmbeddedEtcd

    began = time.monotonic()
    rows: list[Row] = []
    extra_tables: list[str] = []
    print("machine: %s" % machine(), flush=True)
    with EmbeddedEtcd() as etcd:
        for key in wanted:
            title, module_name, function = SECTIONS[key]
            print("running %s. %s ..." % (key, title), file=sys.stderr, flush=True)
            started = time.monotonic()
            module = importlib.import_module(module_name)
            try:
                rows.extend(getattr(module, function)(etcd.endpoint, settings,
                                                      metrics_url=etcd.client_url))
            except Exception as error:  # one failed section must not cost the others' rows
                traceback.print_exc()
                rows.append(Row("%s. %s" % (key, title), "the section failed",
                                "%s: %s" % (type(error).__name__, str(error)[:300]),
                                "", False))
            if getattr(module, "LAST_TABLE", ""):
                extra_tables.append("%s. %s\n\n%s" % (key, title, module.LAST_TABLE))
            print("  done in %.1f s" % (time.monotonic() - started), file=sys.stderr, flush=True)
    print()
    print(table(rows))
    for extra in extra_tables:
        print()
        print(extra)
    if args.transports:
        print()
        print(transports_table(args.quick) or "(benchmarks/bench_transports.py not found)")
    print()
    print("%s run, %.0f s in all." % ("quick" if args.quick else "full",
                                      time.monotonic() - began))
    if args.json:
        with open(args.json, "w") as out:
            json.dump([row.__dict__ for row in rows], out, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
