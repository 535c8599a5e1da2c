#!/usr/bin/env python3
"""Can registrations make step 10's registry flood, or grow without bound?

    python3 bench/probes/registry_flood.py [--bin PATH]

Starts the registry of the real step-10 binary alone, on a free port of
127.0.0.1 (with bench/faults's helpers), and sends it what a hostile or
careless client could:

1. one registration of 2,500 HTTP checks at 100 ms (235 KB);
2. a hundred such registrations;
3. registrations a bounded registry accepts, at their worst: instances of
   8 checks each (4 HTTP at 100 ms, 4 TTL given 4 KB notes full of
   characters the dashboard escapes), until the registry refuses one;
4. what it must refuse: an HTTP check that calls another address than
   its instance's (the registry's own /metrics), and a service name that
   is no DNS label.

After each, the figures: registrations accepted and refused, the
registry's RSS, its CPU and the checks it ran over a 3 s window, and the
size of its dashboard. Prints a Markdown section (stdout; progress on
stderr) and exits 1 if a bound does not hold. About 30 s (a minute
against a registry without the bounds). Python 3's standard library
only; RSS and CPU are read from /proc (Linux).
"""

import argparse
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.parse

WINDOW = 3.0  # seconds over which CPU and checks are measured
START_BOUND = 30.0  # the longest wait for the registry to answer
BIG_CHECKS = 2500  # HTTP checks in one big registration
BIG_BYTES = 235_000  # its size, as the probe that found the flood sent it
BIG_REGISTRATIONS = 100
MOST_TRIES = 1000  # registrations tried before "no bound on instances"
NOTED = 100  # instances whose TTL checks get a 4 KB note
# The bounds this probe holds the registry to.
MOST_GROWTH = 32 << 20  # RSS growth over the idle registry, bytes
MOST_DASHBOARD = 4 << 20  # bytes
MOST_CHECKS_PER_SECOND = 150  # the registry's budget (100/s) and some slack
MOST_CPU = 50.0  # per cent of one core, debug build


def load_faults():
    """bench/faults as a module (a script without .py: loaded by path)."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "faults")
    loader = importlib.machinery.SourceFileLoader("faults", path)
    spec = importlib.util.spec_from_loader("faults", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


faults = load_faults()
say = faults.say


def rss(pid):
    """Resident memory of `pid`, in bytes."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def cpu_seconds(pid):
    """User and system CPU time of `pid` so far, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def mib(size):
    return f"{size / (1 << 20):.1f} MiB"


class Probe:
    def __init__(self, step):
        self.step = step
        self.pid = step.instances["registry"].process.pid
        self.client = faults.Client(step.registry_port, timeout=30.0, key=None)
        self.checks = []  # (check, expected, seen, passed)
        self.rows = []  # (phase, accepted, refused, RSS, CPU, checks/s, dashboard)
        self.baseline = 0

    def check(self, name, expected, seen, passed):
        self.checks.append((name, expected, seen, passed))
        say(f"  {'pass' if passed else 'FAIL'}: {name}: expected {expected}; saw {seen}")

    def register(self, body):
        status, answer = self.client.call("PUT", "/v1/agent/service/register", json.dumps(body))
        return status, answer.decode(errors="replace")

    def deregister(self, service_id):
        self.client.call("PUT", f"/v1/agent/service/deregister/{urllib.parse.quote(service_id, safe='')}")

    def checks_run(self):
        """Every HTTP check the registry has run, from its /metrics."""
        _, page = self.client.call("GET", "/metrics")
        samples = re.findall(rb"^registry_checks_total\{[^}]*\} (\S+)$", page, re.M)
        return sum(float(value) for value in samples)

    def dashboard_bytes(self):
        status, page = self.client.call("GET", "/")
        return len(page) if status == 200 else 0

    def catalog(self):
        return self.client.json("GET", "/v1/catalog/services")[1] or {}

    def measure(self, phase, accepted, refused):
        """Figures of the registry now: CPU and checks over WINDOW."""
        cpu, checks, started = cpu_seconds(self.pid), self.checks_run(), time.monotonic()
        time.sleep(WINDOW)  # a window to measure over, not a wait for anything
        took = time.monotonic() - started
        cpu = 100 * (cpu_seconds(self.pid) - cpu) / took
        per_second = (self.checks_run() - checks) / took
        row = (phase, accepted, refused, rss(self.pid), cpu, per_second, self.dashboard_bytes())
        self.rows.append(row)
        say(f"  {phase}: RSS {mib(row[3])}, CPU {cpu:.0f}%, {per_second:.0f} checks/s, dashboard {row[6]} bytes")
        return row


def big_registration(number, port):
    """An instance with BIG_CHECKS HTTP checks at 100 ms, BIG_BYTES long."""
    service_id = f"flood-{number}"
    check = {"CheckID": "", "HTTP": f"http://127.0.0.1:{port}/", "Interval": "100ms"}
    body = {"Name": "flood", "ID": service_id, "Address": "127.0.0.1", "Port": port, "Checks": []}
    padding = max(0, (BIG_BYTES - len(json.dumps(body))) // BIG_CHECKS - len(json.dumps(check)) - 12)
    body["Checks"] = [
        dict(check, CheckID=f"{service_id}-{n}", HTTP=f"http://127.0.0.1:{port}/{'x' * padding}")
        for n in range(BIG_CHECKS)
    ]
    return body


def bounded_registration(number, port):
    """An instance with 8 checks: 4 HTTP at 100 ms, 4 TTL."""
    service_id = f"bounded-{number}"
    http = [{"CheckID": f"{service_id}-http-{n}", "HTTP": f"http://127.0.0.1:{port}/healthz",
             "Interval": "100ms"} for n in range(4)]
    ttl = [{"CheckID": f"{service_id}-ttl-{n}", "TTL": "1h"} for n in range(4)]
    return {"Name": "bounded", "ID": service_id, "Address": "127.0.0.1", "Port": port,
            "Checks": http + ttl}


def run(probe):
    port = faults.free_port()  # nothing listens there: every check is refused at once
    probe.baseline = probe.measure("idle", 0, 0)[3]

    say("one registration of 2,500 HTTP checks at 100 ms ...")
    body = big_registration(0, port)
    size = len(json.dumps(body))
    status, answer = probe.register(body)
    accepted = faults.is_ok(status)
    probe.measure(f"one registration of {BIG_CHECKS} checks ({size // 1000} KB)", int(accepted), int(not accepted))
    probe.check("a registration of 2,500 checks is refused", "4xx", f"{status} {answer[:100]}",
                isinstance(status, int) and 400 <= status < 500)
    probe.check("and changes nothing", "no `flood` in the catalog", sorted(probe.catalog()),
                "flood" not in probe.catalog())

    say(f"{BIG_REGISTRATIONS} such registrations ...")
    answers = [probe.register(big_registration(n, port))[0] for n in range(1, BIG_REGISTRATIONS + 1)]
    accepted = sum(1 for status in answers if faults.is_ok(status))
    probe.measure(f"{BIG_REGISTRATIONS} such registrations", accepted, len(answers) - accepted)
    probe.check(f"{BIG_REGISTRATIONS} registrations of 2,500 checks are refused", "0 accepted", accepted, accepted == 0)
    for n in range(BIG_REGISTRATIONS + 1):
        probe.deregister(f"flood-{n}")

    say("registrations within the bounds, at their worst, until one is refused ...")
    refused_with = None
    accepted = 0
    for number in range(MOST_TRIES):
        status, answer = probe.register(bounded_registration(number, port))
        if not faults.is_ok(status):
            refused_with = f"{status} {answer[:120]}"
            break
        accepted += 1
    note = urllib.parse.quote("<\"&'>" * (4096 // 5))  # 4 KB that the dashboard must escape
    for number in range(min(NOTED, accepted)):
        for n in range(4):
            probe.client.call("PUT", f"/v1/agent/check/pass/bounded-{number}-ttl-{n}?note={note}")
    row = probe.measure(f"instances of 8 checks until refused ({NOTED} with 4 KB notes)", accepted, int(refused_with is not None))
    probe.check("the registry keeps a bounded number of instances", f"a refusal before {MOST_TRIES}",
                refused_with or f"{accepted} accepted", refused_with is not None)
    probe.check("its RSS stays bounded", f"at most {mib(MOST_GROWTH)} over idle",
                mib(row[3] - probe.baseline), row[3] - probe.baseline <= MOST_GROWTH)
    probe.check("its dashboard stays small", f"at most {mib(MOST_DASHBOARD)}", mib(row[6]), row[6] <= MOST_DASHBOARD)
    probe.check("it runs a bounded number of checks", f"at most {MOST_CHECKS_PER_SECOND}/s",
                f"{row[5]:.0f}/s", row[5] <= MOST_CHECKS_PER_SECOND)
    probe.check("its CPU stays low", f"at most {MOST_CPU:.0f}% of a core", f"{row[4]:.0f}%", row[4] <= MOST_CPU)
    for number in range(accepted):
        probe.deregister(f"bounded-{number}")

    say("what it must refuse ...")
    elsewhere = {"Name": "elsewhere", "ID": "elsewhere-1", "Address": "127.0.0.1", "Port": port,
                 "Check": {"HTTP": f"http://127.0.0.1:{probe.step.registry_port}/metrics", "Interval": "1s"}}
    status, answer = probe.register(elsewhere)
    probe.check("a check that calls another address than its instance's is refused", "400",
                f"{status} {answer[:100]}", status == 400)
    status, answer = probe.register({"Name": "users?1", "Check": {"TTL": "10s"}})
    probe.check("a service name that is no DNS label is refused", "400", f"{status} {answer[:100]}", status == 400)


def print_report(probe):
    print("## Registry flood (`bench/probes/registry_flood.py`)\n")
    print(f"Step 10's registry alone, debug build; CPU and checks over {WINDOW:.0f} s after each phase.\n")
    print("| phase | accepted | refused | RSS | CPU (one core) | checks/s | dashboard |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for phase, accepted, refused, resident, cpu, per_second, dashboard in probe.rows:
        print(f"| {phase} | {accepted} | {refused} | {mib(resident)} | {cpu:.0f}% | {per_second:.0f} | {dashboard:,} B |")
    print("\n| check | expected | seen | |")
    print("| --- | --- | --- | --- |")
    for name, expected, seen, passed in probe.checks:
        print(f"| {name} | {expected} | {faults.cell(str(seen))} | {'ok' if passed else 'FAILED'} |")


def main():
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--bin", default=os.environ.get("FAULTS_BIN"), help="the step-10 binary (env FAULTS_BIN)")
    arguments = options.parse_args()
    program = faults.find_program(arguments.bin)
    scratch = tempfile.mkdtemp(prefix="registry-flood-")
    step = faults.Step(program, scratch)
    try:
        step.add("registry", "registry", port=step.registry_port)
        leader = faults.Client(step.registry_port, key=None)
        if faults.wait_for(lambda: leader.call("GET", "/v1/status/leader")[0] == 200, START_BOUND) is None:
            say("the registry never answered")
            return 1
        probe = Probe(step)
        run(probe)
        print_report(probe)
        return 0 if all(passed for *_, passed in probe.checks) else 1
    finally:
        step.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
