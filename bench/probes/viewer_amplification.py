#!/usr/bin/env python3
"""Does the trace viewer amplify what it is sent?

    python3 bench/probes/viewer_amplification.py [--bin PATH] [--only CASE,...]

Starts the real trace-viewer (each case on free ports of 127.0.0.1, never
4318 or 16686), posts it hostile OTLP exports, protobuf built by hand, as a
step's exporter sends them, and measures what comes out:

- one trace, a chain of 1,000 spans (each the child of the one before) with
  50 one-character events per span, about 764 KB: the page's bytes, the
  bytes the viewer prints to its terminal, its RSS;
- ten such traces: the page's bytes and render time, RSS, and how long a
  small OTLP post waits while the page renders (a step's exporter gives up
  after 3 s);
- a hundred such traces, the page not asked for: RSS (what is kept);
- 100 posts, each with a 1.9 MB trace id: what they are answered, RSS;
- control characters (ESC, OSC 52 to the clipboard, BEL) in a service, a
  span's name and an event: do they reach the terminal as they are?
- three spans, two with the same span id: does the trace say so?

Prints a Markdown section (progress goes to stderr) and exits 1 when a
bound does not hold. About a minute with the viewer as it should be, several
without. Python 3's standard library only; RSS is read from /proc (Linux).

The binary: --bin, or target/debug/trace-viewer (under CARGO_TARGET_DIR if
set), which `cargo build -p trace-viewer` makes (it is run first without
--bin, so the binary is the source's).
"""

import argparse
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

# The bounds the viewer is held to, a little above its own limits (a page
# of 4 MiB, 64 KiB of text per trace, 32 MiB of traces kept).
PAGE_BOUND = 4_500_000  # bytes of one page, whatever it keeps
TERMINAL_BOUND = 100_000  # bytes printed for one trace
RSS_BOUND = 100_000_000  # peak resident memory, in every case
POST_WAIT_BOUND = 0.5  # seconds an OTLP post may wait while the page renders
PATIENCE = 300.0  # the longest wait for anything (the unbounded viewer is slow)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def say(message):
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------
# OTLP in protobuf, by hand: the few fields a span needs.
# ---------------------------------------------------------------------------


def varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(number, payload):
    """A length-delimited field: bytes, a string, a message."""
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def fixed64(number, value):
    return varint(number << 3 | 1) + value.to_bytes(8, "little")


def number(number, value):
    return varint(number << 3) + varint(value)


def span(trace_id, span_id, parent_id, name, start, end, events=(), error=False):
    """An OTLP Span: ids (bytes), times (ns), events as (time, name)."""
    out = field(1, trace_id) + field(2, span_id)
    if parent_id:
        out += field(4, parent_id)
    out += field(5, name) + fixed64(7, start) + fixed64(8, end)
    for at, event in events:
        out += field(11, fixed64(1, at) + field(2, event))
    if error:
        out += field(15, number(3, 2))  # Status { code: STATUS_CODE_ERROR }
    return out


def export(service, spans):
    """An ExportTraceServiceRequest: one resource (service.name), one scope."""
    name = field(1, "service.name") + field(2, field(1, service))  # KeyValue(AnyValue)
    resource = field(1, name)
    scope_spans = b"".join(field(2, s) for s in spans)
    return field(1, field(1, resource) + field(2, scope_spans))


def chain(trace_id, spans=1000, events=50):
    """A chain of `spans` spans, each inside the one before, with one-character events."""
    base = 1_700_000_000_000_000_000
    out = []
    for n in range(spans):
        start, end = base + n * 1000, base + (2 * spans - n) * 1000
        parent = n.to_bytes(8, "big") if n else b""
        moments = [(start + k, "x") for k in range(events)]
        out.append(span(trace_id, (n + 1).to_bytes(8, "big"), parent, "GET /chain", start, end, moments))
    return out


# ---------------------------------------------------------------------------
# The viewer, as a process on free ports.
# ---------------------------------------------------------------------------


def free_port():
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        return held.getsockname()[1]


class Viewer:
    def __init__(self, program, quiet="500ms"):
        self.otlp_port, self.page_port = free_port(), free_port()
        self.terminal = tempfile.TemporaryFile()
        command = [
            program,
            "--otlp-port", str(self.otlp_port),
            "--ui-port", str(self.page_port),
            "--quiet", quiet,
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=self.terminal,
                                        stderr=subprocess.STDOUT)
        self.wait_for(lambda: b"listening on" in self.printed(), "the viewer to start")

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        self.terminal.close()

    def printed(self):
        self.terminal.seek(0)
        return self.terminal.read()

    def wait_for(self, condition, what, patience=PATIENCE):
        deadline = time.monotonic() + patience
        while not condition():
            if self.process.poll() is not None:
                raise SystemExit(f"the viewer stopped while waiting for {what}: {self.printed()[-2000:]!r}")
            if time.monotonic() > deadline:
                raise SystemExit(f"gave up after {patience:.0f} s waiting for {what}")
            time.sleep(0.05)

    def settled_terminal(self, marker, patience=PATIENCE):
        """What the terminal shows once `marker` is printed and no byte came for 2 s."""
        self.wait_for(lambda: marker in self.printed(), f"{marker!r} in the terminal", patience)
        size, still_since = -1, time.monotonic()
        while time.monotonic() - still_since < 2.0:
            now = len(self.printed())
            if now != size:
                size, still_since = now, time.monotonic()
            time.sleep(0.1)
        return self.printed()

    def post(self, body, timeout=60):
        """POST /v1/traces; the status and how long it took."""
        connection = http.client.HTTPConnection("127.0.0.1", self.otlp_port, timeout=timeout)
        began = time.monotonic()
        try:
            connection.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
            response = connection.getresponse()
            response.read()
            return response.status, time.monotonic() - began
        finally:
            connection.close()

    def page(self, timeout=PATIENCE):
        """GET / ; the body and how long it took."""
        connection = http.client.HTTPConnection("127.0.0.1", self.page_port, timeout=timeout)
        began = time.monotonic()
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            body = response.read()
            return body, time.monotonic() - began
        finally:
            connection.close()

    def rss(self):
        """(current, peak) resident memory in bytes, from /proc."""
        figures = {}
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    figures[key] = int(value.split()[0]) * 1024
        return figures["VmRSS"], figures["VmHWM"]


# ---------------------------------------------------------------------------
# The cases.
# ---------------------------------------------------------------------------


def mb(n):
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"


class Probe:
    def __init__(self, program):
        self.program = program
        self.rows = []  # (case, figure, value, bound, holds)

    def figure(self, case, name, value, bound="", holds=None):
        self.rows.append((case, name, value, bound, holds))
        mark = "" if holds is None else (" (holds)" if holds else " (DOES NOT HOLD)")
        say(f"  {case}: {name}: {value}{mark}")

    def rss_figure(self, case, viewer):
        current, peak = viewer.rss()
        self.figure(case, "RSS now / peak", f"{mb(current)} / {mb(peak)}", f"peak <= {mb(RSS_BOUND)}",
                    peak <= RSS_BOUND)

    def one_chain(self):
        case = "one chain of 1,000 spans x 50 events"
        say(f"{case}...")
        viewer = Viewer(self.program)
        try:
            body = export("probe", chain(os.urandom(16)))
            self.figure(case, "OTLP in", mb(len(body)))
            status, _ = viewer.post(body)
            self.figure(case, "answered", status)
            page, took = viewer.page()
            self.figure(case, "page", f"{mb(len(page))} in {took:.2f} s", f"<= {mb(PAGE_BOUND)}",
                        len(page) <= PAGE_BOUND)
            before = len(viewer.printed())
            printed = len(viewer.settled_terminal(b"GET /chain")) - before
            self.figure(case, "terminal", mb(printed), f"<= {mb(TERMINAL_BOUND)}", printed <= TERMINAL_BOUND)
            self.rss_figure(case, viewer)
        finally:
            viewer.stop()

    def ten_chains(self):
        case = "ten such traces"
        say(f"{case}...")
        viewer = Viewer(self.program, quiet="1h")  # the page only: the terminal is the case above
        try:
            for _ in range(10):
                status, _ = viewer.post(export("probe", chain(os.urandom(16))))
            self.figure(case, "last answered", status)
            # Small posts, one after the other, while the page renders.
            small = export("probe", [span(os.urandom(16), b"\x01" * 8, b"", "GET /small", 1, 2)])
            waits, rendered = [], {}

            def render():
                rendered["page"], rendered["took"] = viewer.page()

            renderer = threading.Thread(target=render)
            renderer.start()
            while renderer.is_alive():
                status, took = viewer.post(small)
                waits.append(took)
                time.sleep(0.02)
            renderer.join()
            page, took = rendered["page"], rendered["took"]
            self.figure(case, "page", f"{mb(len(page))} in {took:.2f} s", f"<= {mb(PAGE_BOUND)}",
                        len(page) <= PAGE_BOUND)
            longest = max(waits)
            self.figure(case, "longest OTLP post during the render",
                        f"{longest:.3f} s ({len(waits)} posts)", f"<= {POST_WAIT_BOUND} s",
                        longest <= POST_WAIT_BOUND)
            self.rss_figure(case, viewer)
        finally:
            viewer.stop()

    def hundred_chains(self):
        case = "a hundred such traces"
        say(f"{case}...")
        viewer = Viewer(self.program, quiet="1h")
        try:
            for _ in range(100):
                status, _ = viewer.post(export("probe", chain(os.urandom(16))))
            self.figure(case, "last answered", status)
            self.rss_figure(case, viewer)
        finally:
            viewer.stop()

    def huge_ids(self):
        case = "100 posts with 1.9 MB trace ids"
        say(f"{case}...")
        viewer = Viewer(self.program, quiet="1h")
        try:
            statuses = {}
            for n in range(100):
                trace_id = n.to_bytes(2, "big") * 950_000
                status, _ = viewer.post(export("probe", [span(trace_id, b"\x01" * 8, b"", "GET /", 1, 2)]))
                statuses[status] = statuses.get(status, 0) + 1
            answered = ", ".join(f"{count} x {status}" for status, count in sorted(statuses.items()))
            self.figure(case, "answered", answered, "all refused (400)", statuses == {400: 100})
            page, took = viewer.page()
            self.figure(case, "page", f"{mb(len(page))} in {took:.2f} s", f"<= {mb(PAGE_BOUND)}",
                        len(page) <= PAGE_BOUND)
            self.rss_figure(case, viewer)
        finally:
            viewer.stop()

    def control_characters(self):
        case = "control characters"
        say(f"{case}...")
        viewer = Viewer(self.program)
        try:
            hostile = "\x1b[2J\x1b]52;c;cm0gLXJmIH4K\x07\x07\x1b[31m"
            trace_id = os.urandom(16)
            body = export(f"svc{hostile}", [
                span(trace_id, b"\x01" * 8, b"", f"GET /ctl{hostile}", 1_000, 9_000, [(2_000, f"event{hostile}")]),
            ])
            viewer.post(body)
            printed = viewer.settled_terminal(b"GET /ctl")
            raw = sum(printed.count(c) for c in (b"\x1b", b"\x07", b"\x9b"))
            self.figure(case, "ESC and BEL bytes printed", raw, "0", raw == 0)
            page, _ = viewer.page()
            raw = sum(page.count(c) for c in (b"\x1b", b"\x07"))
            self.figure(case, "ESC and BEL bytes on the page", raw, "0", raw == 0)
        finally:
            viewer.stop()

    def duplicate_ids(self):
        case = "duplicate span ids"
        say(f"{case}...")
        viewer = Viewer(self.program)
        try:
            trace_id = os.urandom(16)
            body = export("probe", [
                span(trace_id, b"\x01" * 8, b"", "GET /dup-root", 1_000, 9_000),
                span(trace_id, b"\x02" * 8, b"\x01" * 8, "GET /dup-first", 2_000, 3_000),
                span(trace_id, b"\x02" * 8, b"\x01" * 8, "GET /dup-second", 4_000, 5_000),
            ])
            viewer.post(body)
            printed = viewer.settled_terminal(b"GET /dup-root").decode(errors="replace")
            header = next(line for line in printed.splitlines() if line.startswith("trace "))
            said = "duplicate" in header
            self.figure(case, "the terminal's trace line", f"`{header}`", "counts the duplicate", said)
            page, _ = viewer.page()
            said = b"duplicate" in page
            self.figure(case, "the page counts the duplicate", said, "yes", said)
        finally:
            viewer.stop()

    def report(self):
        print("## The trace viewer under hostile OTLP\n")
        command = " ".join(["python3 bench/probes/viewer_amplification.py", *sys.argv[1:]])
        print(f"`{command}` (the viewer: {self.program})\n")
        print("| case | figure | value | bound | holds |")
        print("| --- | --- | --- | --- | --- |")
        for case, name, value, bound, holds in self.rows:
            verdict = "" if holds is None else ("yes" if holds else "**no**")
            print(f"| {case} | {name} | {value} | {bound} | {verdict} |")
        failed = [row for row in self.rows if row[4] is False]
        print()
        print(f"{len(failed)} bound(s) did not hold." if failed else "Every bound held.")
        return not failed


CASES = {
    "one-chain": "one_chain",
    "ten-chains": "ten_chains",
    "hundred-chains": "hundred_chains",
    "huge-ids": "huge_ids",
    "control-characters": "control_characters",
    "duplicate-ids": "duplicate_ids",
}


def binary(given):
    if given:
        return os.path.abspath(given)
    subprocess.run(["cargo", "build", "-q", "-p", "trace-viewer"], cwd=ROOT, check=True)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "debug", "trace-viewer")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", help="the trace-viewer binary (default: target/debug/trace-viewer, built)")
    parser.add_argument("--only", help=f"some of the cases, by name: {','.join(CASES)}")
    options = parser.parse_args()
    only = options.only.split(",") if options.only else list(CASES)
    unknown = [name for name in only if name not in CASES]
    if unknown:
        parser.error(f"no case {', '.join(unknown)}: the cases are {', '.join(CASES)}")
    probe = Probe(binary(options.bin))
    for name in only:
        getattr(probe, CASES[name])()
    sys.exit(0 if probe.report() else 1)


if __name__ == "__main__":
    main()
