#!/usr/bin/env python3
"""Can clients make step 10's gateway grow without bound, or call without end?

    python3 bench/probes/gateway_growth.py [--bin PATH] [--injected N]
        [--services N] [--unknown N]

Starts the registry and the gateway of the real step-10 binary, each a
process of its own on a free port of 127.0.0.1 (with bench/faults's
helpers), and a stand-in service of its own that answers every call and
counts them. Then, through the gateway, what a hostile or careless client
could do:

1. ask for names that are no service's name once decoded (`users%3F1`,
   5,000 of them by default): each should be a 404, with no lookup, no
   call and no series;
2. register many services (3,000, or as many as the registry takes), call
   each once through the gateway, and ask `GET /`: how many calls does one
   request make?
3. deregister them all and ask for each again: their circuits and their
   series should go (the gateway runs with `METRICS_IDLE_TIMEOUT=5s`, so
   that the probe need not wait the default ten minutes);
4. ask for names that are service names but registered by no one (5,000
   by default, and one name 2,000 times): the gateway's memory should stay
   bounded, and a name asked for again and again should be looked up once
   a second, not once each (each 404 still lists the services registered,
   a call to the registry's catalog).

After each phase, the gateway's RSS (from /proc, Linux) and the size of
its /metrics. Registry lookups are read from the registry's own /metrics.
Prints a Markdown section (stdout; progress on stderr) and exits 1 if a
bound does not hold. About 30 s with the defaults, debug build. Python 3's
standard library only. Every wait is for a condition, bounded.
"""

import argparse
import http.server
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import socketserver
import sys
import tempfile
import threading
import time
import urllib.parse

START_BOUND = 30.0  # the longest wait for a process to answer
SETTLE_BOUND = 30.0  # the longest wait for circuits and series to go
CLIENTS = 4  # client threads for the floods
IDLE_TIMEOUT = "5s"  # the gateway's METRICS_IDLE_TIMEOUT for this probe
MOST_ASKED = 32  # the services GET / asks at most (gateway.rs)
# The bounds this probe holds the gateway to.
MOST_CALLS_PER_ROOT = 2 * MOST_ASKED + 1  # a lookup and a call each, and the catalog
MOST_GROWTH = 16 << 20  # RSS over the baseline after every phase, bytes
MOST_METRICS_GROWTH = 16 << 10  # /metrics over the baseline once the services are gone
REPEATS = 2000  # times one unknown name is asked for


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


def mib(size):
    return f"{size / (1 << 20):.1f} MiB"


class Stub:
    """A service that answers every GET with a little JSON, and counts them."""

    def __init__(self):
        stub = self
        self.calls = 0
        self.lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                with stub.lock:
                    stub.calls += 1
                body = b'{"name":"stub"}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_):
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return self.calls

    def stop(self):
        self.server.shutdown()


def samples(page, name):
    """{labels: value} of every sample of the metric `name` in a /metrics page."""
    found = {}
    for labels, value in re.findall(rf"^{name}(?:\{{(.*)\}})? (\S+)$", page, re.M):
        found[labels] = float(value)
    return found


class Probe:
    def __init__(self, step, stub):
        self.step, self.stub = step, stub
        self.pid = step.instances["gateway"].process.pid
        self.gateway = faults.Client(step.port("gateway"), timeout=30.0)
        self.registry = faults.Client(step.registry_port, timeout=30.0, key=None)
        self.checks = []  # (check, expected, seen, passed)
        self.rows = []  # (phase, requests, answers, RSS, /metrics bytes)
        self.baseline = None  # (RSS, /metrics bytes)
        self.root_calls = None  # upstream calls of one GET /

    def check(self, name, expected, seen, passed):
        self.checks.append((name, expected, seen, passed))
        say(f"  {'pass' if passed else 'FAIL'}: {name}: expected {expected}; saw {seen}")

    @staticmethod
    def again(client, method, path, body=None):
        """A call on a kept-alive connection, again on a new one if the server had closed it."""
        status, answer = client.call(method, path, body)
        if isinstance(status, str):
            status, answer = client.call(method, path, body)
        return status, answer

    def get(self, path):
        return self.again(self.gateway, "GET", path)

    def get_json(self, path):
        status, answer = self.get(path)
        try:
            return status, json.loads(answer)
        except ValueError:
            return status, None

    def metrics(self):
        status, page = self.get("/metrics")
        if status != 200:
            raise SystemExit(f"the gateway's /metrics answered {status}")
        return page.decode(errors="replace")

    def registry_calls(self, routes=("/v1/health/service/{name}", "/v1/catalog/services")):
        """Requests the registry has answered on these routes: lookups of a
        service's instances, and its list of services (the registry keeps the
        default idle timeout: its counts stay)."""
        status, page = self.again(self.registry, "GET", "/metrics")
        if status != 200:
            raise SystemExit(f"the registry's /metrics answered {status}")
        counted = samples(page.decode(errors="replace"), "http_requests_total")
        return sum(v for labels, v in counted.items() if any(f'route="{r}"' in labels for r in routes))

    def lookups(self):
        return self.registry_calls(("/v1/health/service/{name}",))

    def catalogs(self):
        return self.registry_calls(("/v1/catalog/services",))

    def measure(self, phase, requests, answers):
        row = (phase, requests, answers, rss(self.pid), len(self.metrics()))
        self.rows.append(row)
        say(f"  {phase}: RSS {mib(row[3])}, /metrics {row[4]:,} bytes")
        return row

    def flood(self, paths):
        """GETs every path through the gateway, CLIENTS at a time: answers by status."""
        answers, lock, paths = {}, threading.Lock(), list(paths)

        def client(share):
            own, seen = faults.Client(self.step.port("gateway"), timeout=30.0), {}
            for path in share:
                status = own.call("GET", path)[0]
                seen[status] = seen.get(status, 0) + 1
            own.close()
            with lock:
                for status, count in seen.items():
                    answers[status] = answers.get(status, 0) + count

        threads = [threading.Thread(target=client, args=(paths[n::CLIENTS],)) for n in range(CLIENTS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return answers


def described(answers):
    return ", ".join(f"{count} × {status}" for status, count in sorted(answers.items(), key=str))


def register(probe, name):
    body = {"Name": name, "ID": name, "Address": "127.0.0.1", "Port": probe.stub.port,
            "Check": {"TTL": "10m", "Status": "passing"}}
    status, answer = probe.again(probe.registry, "PUT", "/v1/agent/service/register", json.dumps(body))
    return status, answer.decode(errors="replace")


def injected_names(probe, count):
    say(f"{count} names that are no service's once decoded ...")
    calls, lookups, before = probe.stub.count(), probe.registry_calls(), probe.metrics()
    paths = [f"/api/users%3F{n}/ann" for n in range(count)]
    answers = probe.flood(paths)
    row = probe.measure(f"{count} injected names (`/api/users%3F<n>/ann`)", count, described(answers))
    probe.check("every injected name is a 404", f"{count} × 404", described(answers), answers.get(404) == count)
    seen = (probe.stub.count() - calls, probe.registry_calls() - lookups)
    probe.check("and reaches nothing: calls to services, to the registry", "0, 0", seen, seen == (0, 0))
    after = probe.metrics()
    probe.check("and makes no series", "no label with `users?`", "`users?` in /metrics" if "users?" in after else "none",
                "users?" not in after)
    probe.check("/metrics stays the size it was", f"within {MOST_METRICS_GROWTH:,} bytes of {len(before):,}",
                f"{row[4]:,}", row[4] <= len(before) + MOST_METRICS_GROWTH)


def registered_services(probe, most):
    say(f"registering up to {most} services ...")
    names, refused = [], None
    for n in range(most):
        status, answer = register(probe, f"probe{n:04}")
        if not faults.is_ok(status):
            refused = f"{status} {answer[:80]}"
            break
        names.append(f"probe{n:04}")
    say(f"  {len(names)} registered{'; then refused: ' + refused if refused else ''}")
    # Each called once, as clients would: a circuit, a discovery entry and series each.
    answers = probe.flood(f"/api/{name}/" for name in names)
    probe.check("each registered service answers through the gateway", f"{len(names)} × 200",
                described(answers), answers.get(200) == len(names))

    calls, lookups = probe.stub.count(), probe.registry_calls()
    status, body = probe.get_json("/")
    made = int((probe.stub.count() - calls) + (probe.registry_calls() - lookups))
    parts = len((body or {}).get("services", []))
    probe.root_calls = made
    probe.check("GET / makes a bounded number of calls", f"at most {MOST_CALLS_PER_ROOT}", made,
                made <= MOST_CALLS_PER_ROOT)
    expected = min(len(names), MOST_ASKED)
    left_out = (body or {}).get("left_out")
    probe.check("GET / asks at most 32 services, and says so", f"{expected} parts"
                + (", left_out" if len(names) > MOST_ASKED else ""), f"{status}: {parts} parts, left_out: {left_out}",
                parts == expected and (left_out is not None) == (len(names) > MOST_ASKED))
    probe.measure(f"{len(names)} services registered, each called once, then `GET /`", len(names) + 1,
                  described(answers))
    return names


def gone_services(probe, names):
    say(f"deregistering the {len(names)} services ...")
    for name in names:
        probe.again(probe.registry, "PUT", f"/v1/agent/service/deregister/{urllib.parse.quote(name, safe='')}")
    # Asked for again until none answers: the gateway remembers instances for a second.
    pending, deadline, answers = list(names), time.monotonic() + SETTLE_BOUND, {}
    while pending and time.monotonic() < deadline:
        still = []
        for name in pending:
            status = probe.get(f"/api/{name}/")[0]
            answers[status] = answers.get(status, 0) + 1
            if status == 200:
                still.append(name)
        pending = still
    probe.check("a deregistered service is no longer called", "none answers 200", f"{len(pending)} still do",
                not pending)

    def settled():
        page = probe.metrics()
        return "probe0" not in page and len(page) <= probe.baseline[1] + MOST_METRICS_GROWTH

    took = faults.wait_for(settled, SETTLE_BOUND)
    page = probe.metrics()
    series = len(re.findall(r'^\w+\{[^}]*probe\d{4}', page, re.M))
    probe.check(f"their circuits and series go (idle timeout {IDLE_TIMEOUT})", "no series of theirs",
                f"{series} series, after {took:.1f} s" if took is not None else f"{series} series after {SETTLE_BOUND:.0f} s",
                took is not None)
    _, breakers = probe.get_json("/breakers")
    left = sum(1 for service in (breakers or {}) if service.startswith("probe"))
    probe.check("and /breakers forgets them", "no circuit of theirs", f"{left} services with circuits", left == 0)
    probe.measure(f"the {len(names)} deregistered, asked for again", len(names), described(answers))


def unknown_names(probe, count):
    say(f"{count} service names registered by no one, and one of them {REPEATS} times ...")
    lookups, catalogs, started = probe.lookups(), probe.catalogs(), time.monotonic()
    answers = probe.flood(f"/api/nosuch{n}/" for n in range(count))
    made, listed = probe.lookups() - lookups, probe.catalogs() - catalogs
    took = time.monotonic() - started
    probe.check("each unknown name is a 404", f"{count} × 404", described(answers), answers.get(404) == count)
    probe.check("each is looked up once (and its 404 lists the services registered)",
                f"at most {count} lookups", f"{made:.0f} lookups, {listed:.0f} lists, in {took:.1f} s",
                made <= count)
    row = probe.measure(f"{count} unknown service names", count, described(answers))
    probe.check("the gateway's memory stays bounded", f"at most {mib(MOST_GROWTH)} over the baseline",
                mib(row[3] - probe.baseline[0]), row[3] - probe.baseline[0] <= MOST_GROWTH)

    lookups, catalogs, started = probe.lookups(), probe.catalogs(), time.monotonic()
    answers = probe.flood(["/api/nosuchatall/"] * REPEATS)
    made, listed = probe.lookups() - lookups, probe.catalogs() - catalogs
    took = time.monotonic() - started
    # At most once a second, by each of the clients whose requests arrive
    # together as the second is over.
    most = CLIENTS * (int(took) + 2)
    probe.check(f"one unknown name asked for {REPEATS} times by {CLIENTS} clients: lookups",
                f"at most {most} (one a second a client)",
                f"{made:.0f} lookups, {listed:.0f} lists, in {took:.1f} s", made <= most)


def print_report(probe):
    print("## Gateway growth (`bench/probes/gateway_growth.py`)\n")
    print(f"Step 10's registry and gateway, debug build, the gateway with METRICS_IDLE_TIMEOUT={IDLE_TIMEOUT}; "
          f"{CLIENTS} clients. RSS and /metrics of the gateway after each phase.\n")
    print("| phase | requests | answers | gateway RSS | /metrics |")
    print("| --- | ---: | --- | ---: | ---: |")
    for phase, requests, answers, resident, size in probe.rows:
        print(f"| {phase} | {requests:,} | {answers} | {mib(resident)} | {size:,} B |")
    print(f"\nUpstream calls made by one `GET /` with every service registered: {probe.root_calls}.\n")
    print("| check | expected | seen | |")
    print("| --- | --- | --- | --- |")
    for name, expected, seen, passed in probe.checks:
        print(f"| {name} | {expected} | {faults.cell(str(seen))} | {'ok' if passed else 'FAILED'} |")


def main():
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--bin", default=os.environ.get("FAULTS_BIN"), help="the step-10 binary (env FAULTS_BIN)")
    options.add_argument("--injected", type=int, default=5000, help="names that are no service's (5000)")
    options.add_argument("--services", type=int, default=3000, help="services registered, at most (3000)")
    options.add_argument("--unknown", type=int, default=5000, help="service names registered by no one (5000)")
    arguments = options.parse_args()
    program = faults.find_program(arguments.bin)
    scratch = tempfile.mkdtemp(prefix="gateway-growth-")
    step = faults.Step(program, scratch)
    stub = Stub()
    started = time.monotonic()
    try:
        step.add("registry", "registry", port=step.registry_port)
        leader = faults.Client(step.registry_port, key=None)
        if faults.wait_for(lambda: leader.call("GET", "/v1/status/leader")[0] == 200, START_BOUND) is None:
            say("the registry never answered")
            return 1
        step.env["METRICS_IDLE_TIMEOUT"] = IDLE_TIMEOUT  # the gateway's only
        step.add("gateway", "gateway")
        probe = Probe(step, stub)
        if faults.wait_for(lambda: probe.get("/metrics")[0] == 200, START_BOUND) is None:
            say("the gateway never answered")
            return 1
        row = probe.measure("started", 0, "")
        probe.baseline = (row[3], row[4])
        injected_names(probe, arguments.injected)
        names = registered_services(probe, arguments.services)
        gone_services(probe, names)
        unknown_names(probe, arguments.unknown)
        print_report(probe)
        say(f"took {time.monotonic() - started:.0f} s; binary: {program}")
        return 0 if all(passed for *_, passed in probe.checks) else 1
    finally:
        stub.stop()
        step.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
