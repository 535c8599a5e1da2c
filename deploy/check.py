"""The checks of deploy/ that no schema or linter makes: deploy/check runs
each as `python deploy/check.py <check>`, from the workspace's root, with
the virtual environment it made (PyYAML). Each prints what it checked and
exits 1 with what to fix.

  compose      the files compose.yaml mounts exist; Prometheus's and
               Grafana's configurations, laid out as in their containers,
               are valid and find what they name; the relabelling of
               targets does what prometheus.yml says
  kubernetes   what the manifests promise beyond their schema: probes,
               resources, one replica per SQLite database, Services that
               select pods
  dockerfile   the Rust image is new enough, STEP names a package, and the
               build context has what the Dockerfile copies
  healthcheck  deploy/healthcheck against answers of every kind
"""

import fnmatch
import http.server
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
COMPOSE = DEPLOY / "compose.yaml"

problems = []


def problem(text):
    problems.append(text)
    print(f"  problem: {text}")


def ok(text):
    print(f"  ok: {text}")


def done():
    if problems:
        print(f"  {len(problems)} problem(s): fix them and run deploy/check again")
        sys.exit(1)


# --- compose ---------------------------------------------------------------


def bind_mounts(service):
    """(source path, target, read-only) of a compose service's bind mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
            if not source.startswith((".", "/", "~")):
                continue  # a named volume
        else:
            if volume.get("type") != "bind":
                continue
            source, target = volume["source"], volume["target"]
            read_only = volume.get("read_only", False)
        mounts.append((DEPLOY / source, target, read_only))
    return mounts


def check_mounts(name, service):
    mounts = bind_mounts(service)
    for source, target, _ in mounts:
        if not source.exists():
            problem(f"{name} mounts {os.path.relpath(source, ROOT)} at {target}: no such file or folder")
        else:
            ok(f"{name} mounts {os.path.relpath(source, ROOT)} at {target}")
    # A mount inside a read-only mount needs its mount point to exist in the
    # outer one's source: Docker cannot make it in a read-only folder.
    for source, target, _ in mounts:
        for outer_source, outer_target, outer_ro in mounts:
            if outer_ro and target.startswith(outer_target.rstrip("/") + "/"):
                inside = outer_source / os.path.relpath(target, outer_target)
                if not inside.exists() or inside.is_dir() != source.is_dir():
                    problem(
                        f"{name} mounts {target} inside the read-only mount {outer_target}, "
                        f"but {os.path.relpath(inside, ROOT)} does not exist (or is not a "
                        f"{'folder' if source.is_dir() else 'file'}): Docker cannot make "
                        "the mount point; mount it over a file of the same name"
                    )


def lay_out(service, into):
    """Copies a service's bind mounts into `into` as its container sees
    them, outer mounts first; returns the container path -> local path map."""
    for source, target, _ in sorted(bind_mounts(service), key=lambda m: m[1].count("/")):
        if not source.exists():
            continue
        destination = into / target.lstrip("/")
        if source.is_dir():
            shutil.copytree(source, destination, dirs_exist_ok=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, destination)
    return lambda path: into / path.lstrip("/")


class TargetsHandler(http.server.BaseHTTPRequestHandler):
    """The registry's /prometheus/targets, with made-up instances."""

    body = b""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args):
        pass


# What the registry lists (host, container, pod) and where Prometheus must
# scrape each, under which instance label.
RELABEL_CASES = [
    ("127.0.0.1:8500", "registry", "host.docker.internal:8500", "127.0.0.1:8500"),
    ("127.0.0.1:3003", "service2", "host.docker.internal:3003", "127.0.0.1:3003"),
    ("users:3005", "users", "users:3005", "users:3005"),
    ("10.1.2.3:3001", "gateway", "10.1.2.3:3001", "10.1.2.3:3001"),
]


def check_relabelling(config_path, job):
    groups = [
        {"targets": [address], "labels": {"service": service, "service_id": service, "health": "warning"}}
        for address, service, _, _ in RELABEL_CASES
    ]
    TargetsHandler.body = json.dumps(groups).encode()
    server = http.server.HTTPServer(("127.0.0.1", 0), TargetsHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        text = config_path.read_text()
        url = re.search(r"url:\s*(http://[^/\s]+)/prometheus/targets", text)
        if not url:
            problem(f"{config_path.name}: no http_sd_configs url ending in /prometheus/targets")
            return
        test_config = config_path.with_name("sd-test.yml")
        test_config.write_text(text.replace(url.group(1), f"http://127.0.0.1:{server.server_port}"))
        run = subprocess.run(
            ["promtool", "check", "service-discovery", "--timeout=3s", str(test_config), job],
            capture_output=True,
            text=True,
        )
    finally:
        server.shutdown()
    try:
        # Older promtools print the JSON, then discovery's log lines.
        found, _ = json.JSONDecoder().raw_decode(run.stdout.strip())
    except ValueError:
        problem(f"promtool check service-discovery said: {run.stdout}{run.stderr}")
        return
    scraped = {target["labels"]["instance"]: target["labels"] for target in found}
    for address, _, expected_address, expected_instance in RELABEL_CASES:
        labels = scraped.get(expected_instance)
        if labels is None:
            problem(f"relabelling: the registry's {address} has no target with instance={expected_instance}")
        elif labels["__address__"] != expected_address:
            problem(
                f"relabelling: the registry's {address} is scraped at {labels['__address__']}, "
                f"not {expected_address}"
            )
        elif "health" in labels:
            problem(f"relabelling: {address} keeps the label health (step 09 drops it)")
        else:
            ok(f"relabelling: registry lists {address} -> scraped at {expected_address}")


def check_prometheus(services):
    service = services.get("prometheus")
    if service is None:
        problem("compose.yaml has no service prometheus")
        return
    config = next(
        (arg.split("=", 1)[1] for arg in service.get("command", []) if arg.startswith("--config.file=")),
        "/etc/prometheus/prometheus.yml",
    )
    if "host.docker.internal:host-gateway" not in service.get("extra_hosts", []):
        problem("prometheus needs extra_hosts: host.docker.internal:host-gateway (Linux has no such name)")
    if shutil.which("promtool") is None:
        problem("promtool is not on PATH: install Prometheus (Debian: apt-get install prometheus)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = lay_out(service, Path(tmp))
        config_path = local(config)
        if not config_path.exists():
            problem(f"prometheus reads {config}, which no mount provides")
            return
        run = subprocess.run(["promtool", "check", "config", str(config_path)], capture_output=True, text=True)
        if run.returncode != 0:
            problem(f"promtool check config, with the files laid out as in the container:\n{run.stdout}{run.stderr}")
        else:
            ok(f"promtool check config {config} (and the rule files it names) as mounted")
        jobs = yaml.safe_load(config_path.read_text()).get("scrape_configs", [])
        if jobs:
            check_relabelling(config_path, jobs[0]["job_name"])


def check_grafana(services):
    service = services.get("grafana")
    if service is None:
        problem("compose.yaml has no service grafana")
        return
    with tempfile.TemporaryDirectory() as tmp:
        local = lay_out(service, Path(tmp))
        provisioning = local("/etc/grafana/provisioning")
        sources = {}
        for file in sorted((provisioning / "datasources").glob("*.y*ml")):
            for source in yaml.safe_load(file.read_text()).get("datasources", []):
                sources[source["uid"]] = source["url"]
        for uid, url in sources.items():
            host_port = re.match(r"https?://([^:/]+):(\d+)", url)
            if not host_port or host_port.group(1) not in services:
                problem(
                    f"Grafana's data source {uid} is at {url}: in a container, name a compose "
                    "service (http://prometheus:9090), not localhost"
                )
            else:
                ok(f"Grafana's data source {uid} -> {url}")
        for file in sorted((provisioning / "dashboards").glob("*.y*ml")):
            for provider in yaml.safe_load(file.read_text()).get("providers", []):
                path = provider["options"]["path"]
                dashboards = sorted(local(path).glob("*.json"))
                if not dashboards:
                    problem(f"Grafana's dashboard provider reads {path}, where no mount puts a dashboard")
                for dashboard in dashboards:
                    used = set(re.findall(r'"uid":\s*"([^"]+)"', dashboard.read_text()))
                    used.discard(json.loads(dashboard.read_text()).get("uid"))
                    missing = used - sources.keys()
                    if missing:
                        problem(f"dashboard {dashboard.name} uses data source(s) {sorted(missing)}, not provisioned")
                    else:
                        ok(f"dashboard {path}/{dashboard.name} finds its data source(s) {sorted(used)}")


def check_compose():
    compose = yaml.safe_load(COMPOSE.read_text())
    services = compose["services"]
    for name, service in services.items():
        check_mounts(name, service)
        build = service.get("build")
        if build:
            context = DEPLOY / build["context"]
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.exists():
                problem(f"{name} builds with {dockerfile}, which does not exist")
    check_prometheus(services)
    check_grafana(services)


# --- kubernetes ------------------------------------------------------------


def check_kubernetes():
    objects = []
    for file in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        objects += [(file.name, o) for o in yaml.safe_load_all(file.read_text()) if o]
    deployments = [(f, o) for f, o in objects if o["kind"] == "Deployment"]
    for file, o in objects:
        if o["kind"] != "Namespace" and o["metadata"].get("namespace") != "workshop":
            problem(f"{file}: {o['kind']} {o['metadata']['name']} is not in the namespace workshop")
    for file, o in deployments:
        name = o["metadata"]["name"]
        pod = o["spec"]["template"]["spec"]
        before = len(problems)
        for container in pod["containers"]:
            ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            if env.get("HEALTH_PORT") != str(ports.get("http")):
                problem(f"{file}: HEALTH_PORT ({env.get('HEALTH_PORT')}) is not the http port ({ports.get('http')})")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in container:
                    problem(f"{file}: {name} has no {probe}")
            if container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz":
                problem(
                    f"{file}: {name}'s liveness probe asks /healthz: a 429 (degraded, still "
                    "serving) or a dependency's 503 would restart the pod; ask /metrics"
                )
            if container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/healthz":
                problem(
                    f"{file}: {name}'s readiness probe is an httpGet of /healthz, which counts "
                    "429 (warn) as not ready; run the image's healthcheck instead"
                )
            resources = container.get("resources", {})
            for kind in ("requests", "limits"):
                for resource in ("cpu", "memory"):
                    if resource not in resources.get(kind, {}):
                        problem(f"{file}: {name} has no {kind}.{resource}")
        claims = [v for v in pod.get("volumes", []) if "persistentVolumeClaim" in v]
        if claims:
            if o["spec"].get("replicas") != 1 or o["spec"].get("strategy", {}).get("type") != "Recreate":
                problem(
                    f"{file}: {name} keeps a SQLite database on a volume: it needs replicas: 1 "
                    "and strategy Recreate (never two pods on one database)"
                )
            else:
                ok(f"{file}: {name} is one replica, replaced not rolled, with its own volume")
        if len(problems) == before:
            ok(f"{file}: {name} has its probes, requests and limits")
    for file, o in objects:
        if o["kind"] != "Service":
            continue
        selector = o["spec"]["selector"].items()
        if not any(
            selector <= d["spec"]["template"]["metadata"]["labels"].items() for _, d in deployments
        ):
            problem(f"{file}: the Service {o['metadata']['name']} selects no Deployment's pods")
    exposed = [o for _, o in objects if o["kind"] == "Service" and o["spec"].get("type") in ("LoadBalancer", "NodePort")]
    if [o["metadata"]["name"] for o in exposed] != ["gateway"]:
        problem(f"the gateway, and only it, should be exposed; exposed: {[o['metadata']['name'] for o in exposed]}")
    else:
        ok("only the gateway is exposed outside the cluster")


# --- dockerfile ------------------------------------------------------------


def ignored(path, patterns):
    """Whether a .dockerignore's patterns leave `path` out (last match wins)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, pattern.removeprefix("**/")) for p in prefixes):
            result = not negate
    return result


def check_dockerfile():
    text = (DEPLOY / "Dockerfile").read_text()
    workspace = tomllib.loads((ROOT / "Cargo.toml").read_text())
    rust_version = workspace["workspace"]["package"]["rust-version"]
    needed = tuple(int(x) for x in rust_version.split("."))
    rust = re.search(r"^FROM rust:(\d+\.\d+)", text, re.M)
    if not rust:
        problem("the Dockerfile's build stage is not FROM rust:<version>")
    elif tuple(int(x) for x in rust.group(1).split(".")) < needed:
        problem(f"FROM rust:{rust.group(1)} is older than the workspace's rust-version {rust_version}")
    else:
        ok(f"rust:{rust.group(1)} >= the workspace's rust-version {rust_version}")
    packages = {
        tomllib.loads((ROOT / member / "Cargo.toml").read_text())["package"]["name"]
        for member in workspace["workspace"]["members"]
    }
    for step in set(re.findall(r"^ARG STEP=(\S+)", text, re.M)):
        if step not in packages:
            problem(f"ARG STEP={step} is not a package of the workspace")
        else:
            ok(f"ARG STEP={step} is a package of the workspace")
    patterns = [
        line.strip()
        for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for source in ["Cargo.toml", "Cargo.lock"] + [f"{m}/Cargo.toml" for m in workspace["workspace"]["members"]]:
        if ignored(source, patterns):
            problem(f"Dockerfile.dockerignore leaves {source} out of the build context; cargo needs it")
    for line in re.findall(r"^COPY (?!--from)(.+)$", text, re.M):
        for source in line.split()[:-1]:
            if source == "." or source.startswith("--"):
                continue
            if not (ROOT / source).exists():
                problem(f"the Dockerfile copies {source}, which does not exist")
            elif ignored(source, patterns):
                problem(f"the Dockerfile copies {source}, which Dockerfile.dockerignore leaves out")
            else:
                ok(f"the build context has {source}")


# --- healthcheck -----------------------------------------------------------


def answering(status):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def check_healthcheck():
    script = DEPLOY / "healthcheck"
    closed = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    closed_port = closed.server_port
    closed.server_close()  # a port nothing listens on
    cases = [
        ("step10-cqrs-reporting", 200, 0),
        ("step10-cqrs-reporting", 429, 0),
        ("step10-cqrs-reporting", 503, 1),
        ("step10-cqrs-reporting", 500, 1),
        ("step10-cqrs-reporting", None, 1),
        ("step06-health-check-api", 503, 1),
        ("step05-server-side-service-discovery", 404, 0),
        ("step01-starter", None, 1),
    ]
    for step, status, expected in cases:
        server = answering(status) if status else None
        port = server.server_port if server else closed_port
        env = dict(os.environ, WORKSHOP_STEP=step, HEALTH_PORT=str(port))
        run = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True)
        if server:
            server.shutdown()
        what = f"{step}, {status or 'no answer'}"
        if run.returncode != expected:
            problem(f"healthcheck for {what}: exit {run.returncode}, expected {expected} ({run.stdout.strip()})")
        else:
            ok(f"healthcheck for {what}: {'healthy' if expected == 0 else 'unhealthy'}")


if __name__ == "__main__":
    checks = {
        "compose": check_compose,
        "kubernetes": check_kubernetes,
        "dockerfile": check_dockerfile,
        "healthcheck": check_healthcheck,
    }
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(checks)}")
    checks[sys.argv[1]]()
    done()
