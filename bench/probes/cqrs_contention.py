#!/usr/bin/env python3
"""Step 10's users service when another process holds its database.

    python3 bench/probes/cqrs_contention.py [--bin PATH]

Starts the registry and users (the real step-10 binary, on free ports of
127.0.0.1, with a scratch data folder), using bench/faults's helpers, then:

- Write contention: clients create users straight on users while a second
  connection (Python's sqlite3, as sqlite3 on the command line or a backup
  would) holds the database in a write transaction for 5 s. Every write
  should wait and succeed; none should fail with "database is locked".
- A retried create: a create whose client gave up while it waited, sent
  again once the database is free, is answered 200 with the same user;
  the same body again is a 200, another body under that id a 409, and no
  event is written twice.
- A second users on the same data folder stops at start, saying why.

Prints a Markdown section (progress goes to stderr) and exits 1 if a check
fails. About 15 s; every wait is bounded. Python 3's standard library only.
"""

import argparse
import collections
import importlib.machinery
import importlib.util
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

HOLD = 5.0  # how long the second connection holds the database
WRITERS = 8  # client threads creating users
CLIENT_TIMEOUT = 20.0  # a writer waits this long for an answer: longer than the hold
STOP_BOUND = 15.0  # the longest wait for a process to start or stop


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


class Probe:
    def __init__(self, step):
        self.step = step
        self.checks = []  # (check, expected, seen, passed)
        self.figures = []  # (figure, value)

    def check(self, name, expected, seen, passed):
        self.checks.append((name, expected, seen, passed))
        say(f"  {'pass' if passed else 'FAIL'}: {name}: expected {expected}; saw {seen}")

    def users(self, timeout=CLIENT_TIMEOUT):
        return faults.Client(self.step.port("users"), timeout=timeout, key=None)

    def database(self):
        return os.path.join(self.step.instances["users"].data_dir, "users.sqlite")

    def hold(self):
        """A second connection in a write transaction, until committed."""
        other = sqlite3.connect(self.database(), isolation_level=None, timeout=5)
        other.execute("BEGIN IMMEDIATE")
        return other

    def last_seq(self):
        status, page = self.users().json("GET", "/events?limit=1")
        return (page or {}).get("last_seq") if status == 200 else None

    def start(self):
        say(f"starting the registry and users, data in {self.step.scratch} ...")
        self.step.add("registry", "registry", port=self.step.registry_port)
        self.step.add("users", "users")
        started = faults.wait_for(lambda: self.users(2).call("GET", "/healthz")[0] == 200, STOP_BOUND)
        if started is None:
            raise SystemExit(f"contention: users never answered; see {self.step.scratch}")

    def contention(self):
        say(f"write contention: {WRITERS} writers, the database held for {HOLD:.0f} s ...")
        stopping = threading.Event()
        lock = threading.Lock()
        answers = collections.Counter()  # status -> count
        during = collections.Counter()  # status -> count, of writes sent while held
        waits = []
        holding = threading.Event()

        def writer(number):
            client = self.users()
            for n in range(10_000):
                if stopping.is_set():
                    return
                sent_while_held = holding.is_set()
                started = time.monotonic()
                status, _ = client.call("POST", "/", {"id": f"c{number}-{n}", "name": f"C {number} {n}"})
                with lock:
                    answers[status] += 1
                    if sent_while_held:
                        during[status] += 1
                    waits.append(time.monotonic() - started)

        other = self.hold()
        holding.set()
        threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(WRITERS)]
        for thread in threads:
            thread.start()
        time.sleep(HOLD)  # the fault itself: another process holding the database
        holding.clear()
        other.execute("COMMIT")
        other.close()
        time.sleep(1)  # writes with the database free again
        stopping.set()
        for thread in threads:
            thread.join(CLIENT_TIMEOUT + 5)

        def counted(counter):
            ok = sum(n for s, n in counter.items() if faults.is_ok(s))
            return ok, sum(counter.values()) - ok

        (ok, failed), (ok_held, failed_held) = counted(answers), counted(during)
        self.figures += [
            ("writes sent (all)", sum(answers.values())),
            ("answers by status", ", ".join(f"{s}: {n}" for s, n in sorted(answers.items(), key=str))),
            (f"writes sent while the database was held {HOLD:.0f} s", sum(during.values())),
            ("of those: 2xx / not 2xx", f"{ok_held} / {failed_held}"),
            ("longest wait for an answer", f"{max(waits, default=0):.2f} s"),
        ]
        self.check("writes while another process holds the database", "every one 2xx",
                   f"{ok} 2xx, {failed} not ({faults.format_errors_of({str(s): n for s, n in answers.items() if not faults.is_ok(s)})})",
                   failed == 0 and ok > 0)

    def retried_create(self):
        say("a retried create ...")
        body = {"id": "retried", "name": "Retried"}
        other = self.hold()
        # The client gives up while the write waits; the write goes on.
        impatient = self.users(timeout=1).call("POST", "/", body)[0]
        other.execute("COMMIT")
        other.close()
        # Committed by now, or soon: the write it started.
        landed = faults.wait_for(lambda: self.users(2).call("GET", "/retried")[0] == 200,
                                 STOP_BOUND if impatient == "timeout" else 0.5)
        before = None if landed is None else self.last_seq()
        status, user = self.users().json("POST", "/", body)
        self.check("a create retried after its client gave up", "200, the same user",
                   f"first try: {impatient}; retry: {status} {user}", status == 200 and user == {**body, "state": "active"})
        again = self.users().call("POST", "/", body)[0]
        conflict = self.users().call("POST", "/", {"id": "retried", "name": "Someone else"})[0]
        after = self.last_seq()
        self.check("the same body again; another body under that id", "200; 409", f"{again}; {conflict}",
                   again == 200 and conflict == 409)
        self.check("no event written twice", "last_seq unchanged by the retries", f"{before} -> {after}",
                   before is not None and before == after)

    def second_copy(self):
        say("a second users on the same data folder ...")
        first = self.step.instances["users"]
        log_path = os.path.join(self.step.scratch, "users-2.log")
        self.step.instances["users-2"] = faults.Instance("users", faults.free_port(), first.data_dir, log_path, [])
        self.step.start("users-2")
        process = self.step.instances["users-2"].process
        try:
            code = process.wait(STOP_BOUND)
        except subprocess.TimeoutExpired:
            code = None
            self.step.stop("users-2")
        with open(log_path, encoding="utf-8", errors="replace") as log:
            said = [line.strip() for line in log if "cannot start" in line]
        message = said[0].split(" ERROR ", 1)[-1] if said else "nothing"
        self.check("a second users on the same data folder", "stops at start, saying another is running",
                   f"exit {code if code is not None else 'none: still running'}; said: {message}",
                   code not in (None, 0) and "another users is running" in message)
        created = self.users().call("POST", "/", {"id": "after", "name": "After"})[0]
        read = self.users().call("GET", "/after")[0]
        self.check("the first users after that", "still writes: POST 201, GET 200",
                   f"POST {created}, GET {read}", created == 201 and read == 200)

    def report(self, program, took):
        print(f"\n### Write contention on step 10's users ({took:.0f} s)\n")
        print(f"Binary: `{program}`; the database held by Python's sqlite3 (`BEGIN IMMEDIATE`) for {HOLD:.0f} s "
              f"while {WRITERS} clients create users straight on users.\n")
        print("| figure | value |")
        print("| --- | --- |")
        for name, value in self.figures:
            print(f"| {faults.cell(name)} | {faults.cell(value)} |")
        print("\n| check | expected | seen | result |")
        print("| --- | --- | --- | --- |")
        for name, expected, seen, passed in self.checks:
            print(f"| {faults.cell(name)} | {faults.cell(expected)} | {faults.cell(seen)} "
                  f"| {'pass' if passed else '**FAIL**'} |")
        failed = [check for check in self.checks if not check[3]]
        print(f"\n{len(self.checks) - len(failed)} of {len(self.checks)} checks passed.")
        return not failed


def main():
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--bin", default=os.environ.get("FAULTS_BIN"), help="the step-10 binary (env FAULTS_BIN)")
    arguments = options.parse_args()
    program = faults.find_program(arguments.bin)
    started = time.monotonic()
    scratch = tempfile.mkdtemp(prefix="contention-")
    step = faults.Step(program, scratch)
    probe = Probe(step)
    try:
        probe.start()
        probe.contention()
        probe.retried_create()
        probe.second_copy()
    finally:
        step.stop_all()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if probe.report(program, time.monotonic() - started) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stops what it started, as Ctrl-C does
    sys.exit(main())
