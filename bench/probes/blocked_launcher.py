#!/usr/bin/env python3
"""Does a terminal that stops reading stop step 10?

    python3 bench/probes/blocked_launcher.py [--bin PATH] [--requests N]

Runs step 10 as a learner does, the launcher with its seven services (the
binary with no service named), on free ports of 127.0.0.1 with a scratch
data folder, and with its stdout a pipe that nobody reads: as
`cargo run -p step10-cqrs-reporting | sleep 300` does, or Ctrl-S in a
terminal. Then:

1. N requests through the gateway (`GET /api/service2/`, a log line in the
   gateway and one in service2 each), counted answered or lost; after
   three lost in a row the rest are not sent;
2. the pipe is read again, with a request now and then to make new lines,
   until the launcher's notice of the lines it dropped shows (or 30 s);
3. the pipe is left unread again, N more requests fill it, and the
   launcher gets SIGTERM: how long until it and its services are gone.

Prints a Markdown section (stdout; progress on stderr) and exits 1 if a
request was lost or the step did not stop within 30 s of SIGTERM. Linux
or macOS (it sends signals), Python 3's standard library only; the helpers (free ports, the environment, the
HTTP client, the binary) are bench/faults' own. Every process it starts is
killed when it ends.
"""

import argparse
import importlib.machinery
import importlib.util
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# bench/faults has no .py suffix: its loader is named, not guessed.
_loader = importlib.machinery.SourceFileLoader("faults", os.path.join(HERE, "..", "faults"))
faults = importlib.util.module_from_spec(importlib.util.spec_from_loader("faults", _loader))
_loader.exec_module(faults)

STOP_BOUND = 30.0  # the longest wait for the step to stop, or for the notice
LOST_IN_A_ROW = 3  # then the step is taken to have stopped answering
NOTICE = "lines dropped while the terminal was not reading"
PATH = "/api/service2/"


def start_step(program, scratch):
    """The launcher on free ports, its stdout a pipe; stderr to a file."""
    ports = {name: faults.free_port() for name in
             ("REGISTRY", "GATEWAY", "SERVICE1", "SERVICE2", "USERS", "ACCOUNTS", "REPORTS")}
    env = faults.clean_environment()
    env.update({f"{name}_PORT": str(port) for name, port in ports.items()})
    env.update(REGISTRY_URL=f"http://127.0.0.1:{ports['REGISTRY']}",
               DATA_DIR=scratch, RUST_LOG="info", NO_COLOR="1")
    stderr = open(os.path.join(scratch, "launcher-stderr.log"), "wb")
    launcher = subprocess.Popen(
        [program], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr,
        start_new_session=True,  # its own group: killed as one at the end
    )
    stderr.close()
    return launcher, ports


def send(client, count):
    """`count` requests; (answered, lost, not sent)."""
    answered = lost = in_a_row = 0
    for _ in range(count):
        status, _ = client.call("GET", PATH)
        if faults.is_ok(status):
            answered, in_a_row = answered + 1, 0
            continue
        lost, in_a_row = lost + 1, in_a_row + 1
        if in_a_row == LOST_IN_A_ROW:
            break
    return answered, lost, count - answered - lost


def read_available(pipe, seconds):
    """What the pipe holds now, waiting at most `seconds` for something."""
    ready, _, _ = select.select([pipe], [], [], seconds)
    return os.read(pipe.fileno(), 1 << 16) if ready else b""


def read_until_notice(pipe, client):
    """Reads the pipe again, a request now and then making new lines: the
    notice line (or None), and the requests (answered, lost) meanwhile."""
    text, answered, lost = b"", 0, 0
    deadline = time.monotonic() + STOP_BOUND
    while time.monotonic() < deadline:
        text += read_available(pipe, 0.05)
        for line in text.decode(errors="replace").splitlines():
            if NOTICE in line:
                return line, (answered, lost)
        text = text[text.rfind(b"\n") + 1:]  # a partial line waits for the rest
        status, _ = client.call("GET", PATH)
        answered, lost = (answered + 1, lost) if faults.is_ok(status) else (answered, lost + 1)
    return None, (answered, lost)


def stop(launcher, ports):
    """SIGTERM to the launcher alone: seconds until it ended (None if it did
    not within STOP_BOUND), and the services still answering then."""
    started = time.monotonic()
    launcher.send_signal(signal.SIGTERM)
    try:
        launcher.wait(STOP_BOUND)
        took = time.monotonic() - started
    except subprocess.TimeoutExpired:
        took = None
    answering = [name.lower() for name, port in ports.items() if accepts(port)]
    return took, answering


def accepts(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def unblocked_stop(launcher):
    """For a launcher that SIGTERM did not stop: does reading its output let
    it stop? Seconds until it ended once read, or None."""
    started = time.monotonic()
    while time.monotonic() - started < STOP_BOUND:
        read_available(launcher.stdout, 0.05)
        if launcher.poll() is not None:
            return time.monotonic() - started
    return None


def main():
    options = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    options.add_argument("--bin", default=os.environ.get("FAULTS_BIN"), help="the step-10 binary (env FAULTS_BIN)")
    options.add_argument("--requests", type=int, default=3000, help="requests while the output is not read (default 3000)")
    arguments = options.parse_args()
    program = faults.find_program(arguments.bin)
    scratch = tempfile.mkdtemp(prefix="blocked-launcher-")
    launcher, ports = start_step(program, scratch)
    try:
        client = faults.Client(ports["GATEWAY"])
        ready = faults.wait_for(lambda: faults.is_ok(client.call("GET", PATH)[0]), STOP_BOUND)
        if ready is None:
            faults.say("the step never answered through the gateway")
            return 1
        faults.say(f"step up; {arguments.requests} requests, stdout not read ...")
        blocked = send(client, arguments.requests)
        faults.say("reading stdout again ...")
        notice, while_read = read_until_notice(launcher.stdout, client)
        faults.say(f"stdout not read again; {arguments.requests} requests ...")
        blocked_again = send(client, arguments.requests)
        client.close()
        faults.say("SIGTERM to the launcher ...")
        took, answering = stop(launcher, ports)
        after_reading = unblocked_stop(launcher) if took is None else None
    finally:
        try:
            os.killpg(launcher.pid, signal.SIGKILL)  # the launcher and its services
        except ProcessLookupError:
            pass  # all gone already
        launcher.wait()
        shutil.rmtree(scratch, ignore_errors=True)

    print("## A launcher whose output is not read\n")
    print(f"Step 10's launcher with stdout a pipe nobody reads, `GET {PATH}` through the gateway "
          f"(client timeout {faults.CLIENT_TIMEOUT:g} s), binary `{program}`.\n")
    print("| stdout | requests answered | lost | not sent (after 3 lost in a row) |")
    print("| --- | --- | --- | --- |")
    print("| not read | {} | {} | {} |".format(*blocked))
    print("| read again, until the notice | {} | {} | 0 |".format(*while_read))
    print("| not read again | {} | {} | {} |".format(*blocked_again))
    print()
    print(f"- notice once read again: {f'`{notice}`' if notice else f'none within {STOP_BOUND:g} s'}")
    if took is not None:
        print(f"- SIGTERM, stdout not read: the launcher ended after {took:.2f} s")
    else:
        ended = f"it ended {after_reading:.2f} s after its output was read" if after_reading is not None else "nor once its output was read"
        print(f"- SIGTERM, stdout not read: the launcher had not ended after {STOP_BOUND:g} s; {ended}")
    print(f"- services still answering then: {', '.join(answering) or 'none'}")
    lost = blocked[1] + blocked[2] + while_read[1] + blocked_again[1] + blocked_again[2]
    return 0 if lost == 0 and took is not None and not answering else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(main())
