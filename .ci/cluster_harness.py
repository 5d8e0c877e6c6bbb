"""The cluster-shaped rollout test (run by .ci/cluster.sh inside a private mount
namespace whose /etc/hosts is the hosts file named by --hosts).

Every Deployment of `helm template` runs as its replicas (2), each pod its own
process on its own loopback address, under the app's mix from the bench's
`rollout` mode, through: a rolling update of every Deployment in turn
(maxSurge/maxUnavailable from the rendered strategy), SIGKILL of one replica of
each role in turn (the ReplicaSet's replacement comes up on a new address), and
both replicas of one role down, then back. Prints one figure line and exits
non-zero when a figure misses its bar.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import yaml

from cluster_pods import Dns, Pod, Spec, log, pod_env

ARGS = None
PODS = []
CLIENTS = []


def render():
    docs = [d for d in yaml.safe_load_all(open(ARGS.rendered)) if d]
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], []).append(d)
    return kinds


class Cluster:
    def __init__(self, kinds, secrets):
        # Deployments that serve (a port and probes) and those that only call
        # others (the chart's load generator).
        serving = [d for d in kinds["Deployment"] if d["spec"]["template"]["spec"]["containers"][0].get("ports")]
        self.clients = [d for d in kinds["Deployment"] if d not in serving]
        self.specs = [Spec(d) for d in serving]
        # What the chart's defaults promise and this test relies on: two pods of
        # everything, and a budget that keeps a node drain from taking both.
        budgets = [d["spec"]["selector"]["matchLabels"] for d in kinds.get("PodDisruptionBudget", [])]
        for spec in self.specs:
            if spec.replicas < 2 or not any(b.items() <= spec.labels.items() for b in budgets):
                raise SystemExit(f"{spec.name}: the chart's defaults render {spec.replicas} replica(s) "
                                 "and PodDisruptionBudgets for none or some; zero downtime needs 2 and one each")
        self.config_maps = {d["metadata"]["name"]: d["data"] for d in kinds["ConfigMap"]}
        self.secrets = secrets
        services = {d["metadata"]["name"]: d["spec"]["selector"] for d in kinds["Service"]}
        self.dns = Dns(ARGS.hosts, services)
        self.next_ip = 1
        self.pods = {s.name: [] for s in self.specs}
        # The migration hook; the JWT generator's Secret is given in `secrets`.
        self.jobs = [j for j in kinds.get("Job", [])
                     if j["spec"]["template"]["spec"]["containers"][0].get("args", [])[:1] == ["migrate"]]

    def run_job(self, job):
        """The migration hook Job: its container, once, to completion."""
        c = job["spec"]["template"]["spec"]["containers"][0]
        spec = Spec.__new__(Spec)
        spec.name, spec.container = job["metadata"]["name"], c
        env = pod_env(spec, spec.name, "127.0.0.1", self.config_maps, self.secrets, ARGS.workdir)
        log(f"job {spec.name}: {' '.join(c.get('args', []))}")
        subprocess.run([ARGS.bin] + c.get("args", []), env=env, check=True, timeout=120)

    def start(self, spec):
        n = self.next_ip
        self.next_ip += 1
        ip = f"127.{ARGS.subnet}.{n // 250}.{n % 250 + 2}"
        name = f"{spec.name}-{n}"
        data = os.path.join(ARGS.workdir, name)
        os.makedirs(os.path.join(data, "tmp"), exist_ok=True)
        env = pod_env(spec, name, ip, self.config_maps, self.secrets, data)
        env["TMPDIR"] = os.path.join(data, "tmp")
        pod = Pod(spec, name, ip, env, ARGS.bin, self.dns, ARGS.workdir)
        PODS.append(pod)
        self.pods[spec.name].append(pod)
        return pod

    def rolling_update(self, spec):
        """The Deployment controller with maxUnavailable 0: a new pod (up to
        maxSurge at once), ready, then an old one terminates."""
        surge, unavailable = spec.strategy["maxSurge"], spec.strategy["maxUnavailable"]
        if unavailable not in (0, "0", "0%") or int(str(surge).rstrip("%") or 0) < 1:
            raise SystemExit(f"{spec.name}: strategy {spec.strategy} would drop capacity")
        stops = []
        for old in list(self.pods[spec.name]):
            new = self.start(spec)
            new.wait_ready()
            self.pods[spec.name].remove(old)
            stops.append((old, old.terminate()))
        return stops


def start_client(cluster, deployment):
    """A Deployment that listens on nothing: its container's command as rendered,
    the bench binary standing for `douyin-bench` of the image."""
    c = deployment["spec"]["template"]["spec"]["containers"][0]
    programs = {"douyin-bench": ARGS.bench, "douyin": ARGS.bin}
    if c["command"][0] not in programs:
        raise SystemExit(f"{deployment['metadata']['name']}: runs {c['command'][0]}, which the image does not have")
    spec = Spec.__new__(Spec)
    spec.name, spec.container = deployment["metadata"]["name"], c
    env = pod_env(spec, spec.name, "127.0.0.1", cluster.config_maps, cluster.secrets, ARGS.workdir)
    log_path = os.path.join(ARGS.workdir, f"{spec.name}.log")
    log(f"client {spec.name}: {' '.join(c['command'] + c.get('args', []))}")
    with open(log_path, "w") as out:
        proc = subprocess.Popen([programs[c["command"][0]]] + c["command"][1:] + c.get("args", []), env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    CLIENTS.append(proc)
    return proc, log_path


def stop_client(proc, log_path):
    """SIGTERM, then its last figure line (the traffic tool prints one when it stops)."""
    proc.terminate()
    proc.wait(timeout=15)
    lines = [line for line in open(log_path) if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def jwt_key(secrets):
    return next(data["DOUYIN_JWT_SECRET"] for data in secrets.values() if "DOUYIN_JWT_SECRET" in data)


def phase(name):
    """Names the phase requests sent from now on count under. The load reads the
    file every 100 ms, so the step that follows waits until every worker has
    seen it: a request sent just before a SIGKILL counts under the kill's phase."""
    with open(ARGS.phase_file, "w") as f:
        f.write(name)
    log(f"phase {name}")
    time.sleep(0.3)


def wait_serving(pod, grpc, since, timeout):
    """Seconds from `since` until the pod serves calls that are not probes."""
    deadline = time.monotonic() + timeout
    while pod.served(grpc) == 0:
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)
    return time.monotonic() - since


def scenario(cluster, gateway, roles):
    failures = []
    phase("rolling")
    stops = []
    for spec in roles + [gateway]:
        log(f"rolling update of {spec.name}")
        stops += cluster.rolling_update(spec)
    for pod, thread in stops:
        thread.join()
        if pod.exit_code != 0 or pod.killed_at_grace:
            failures.append(f"{pod.name} exited {pod.exit_code} (killed at grace: {pod.killed_at_grace})")
    # The settling time after each step counts with the step.
    time.sleep(3)

    phase("kill")
    back = []
    for spec in roles:
        victim = cluster.pods[spec.name].pop(0)
        log(f"SIGKILL {victim.name}")
        victim.kill()
        new = cluster.start(spec)
        new.wait_ready()
        took = wait_serving(new, True, new.ready_at, ARGS.rpc_deadline)
        back.append(took)
        if took is None:
            failures.append(f"{new.name} got no calls within {ARGS.rpc_deadline}s of being ready")
    time.sleep(3)

    phase("kill-gateway")
    victim = cluster.pods[gateway.name].pop(0)
    log(f"SIGKILL {victim.name}")
    victim.kill()
    cluster.start(gateway).wait_ready()
    time.sleep(2)

    down = next(s for s in roles if s.name.endswith(ARGS.outage_role))
    phase("outage")
    gone = cluster.pods[down.name]
    cluster.pods[down.name] = []
    for pod in gone:
        log(f"SIGKILL {pod.name}")
        pod.kill()
    time.sleep(ARGS.rpc_deadline + 2)
    replacements = [cluster.start(down) for _ in gone]
    for pod in replacements:
        pod.wait_ready()
    ready = max(p.ready_at for p in replacements)
    phase("recovering")
    recovered = wait_serving(replacements[0], True, ready, ARGS.rpc_deadline)
    time.sleep(max(0.0, ARGS.rpc_deadline - (time.monotonic() - ready)))
    phase("recovered")
    time.sleep(5)
    phase("stop")
    return failures, back, recovered


def counts_check():
    """Counts kept by the system against the rows they count."""
    checks = {
        "video favorite_count": "SELECT COUNT(*) FROM video_stats s WHERE s.favorite_count <> "
        "(SELECT COUNT(*) FROM favorites f WHERE f.video_id = s.video_id)",
        "video comment_count": "SELECT COUNT(*) FROM video_stats s WHERE s.comment_count <> "
        "(SELECT COUNT(*) FROM comments c WHERE c.video_id = s.video_id)",
        "user follow_count": "SELECT COUNT(*) FROM user_stats s WHERE s.follow_count <> "
        "(SELECT COUNT(*) FROM follows f WHERE f.follower_id = s.user_id)",
        "user follower_count": "SELECT COUNT(*) FROM user_stats s WHERE s.follower_count <> "
        "(SELECT COUNT(*) FROM follows f WHERE f.followee_id = s.user_id)",
        "user favorite_count": "SELECT COUNT(*) FROM user_stats s WHERE s.favorite_count <> "
        "(SELECT COUNT(*) FROM favorites f WHERE f.user_id = s.user_id)",
    }
    bad = {}
    for what, sql in checks.items():
        out = subprocess.run(["mariadb", "-h127.0.0.1", "-uroot", "-N", ARGS.database, "-e", sql],
                             capture_output=True, text=True, check=True).stdout.strip()
        if out != "0":
            bad[what] = out
    return bad


def main():
    global ARGS
    p = argparse.ArgumentParser()
    for flag in ("rendered", "hosts", "bin", "bench", "workdir", "database", "secrets", "phase-file"):
        p.add_argument(f"--{flag}", required=True)
    p.add_argument("--subnet", type=int, default=77)
    p.add_argument("--rpc-deadline", type=float, default=5.0)
    p.add_argument("--outage-role", default="relation")
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--videos", type=int, default=400)
    ARGS = p.parse_args()
    started = time.monotonic()
    cluster = Cluster(render(), json.load(open(ARGS.secrets)))
    for job in cluster.jobs:
        cluster.run_job(job)
    specs = {s.name: s for s in cluster.specs}
    gateway = next(s for s in cluster.specs if "http" in s.ports)
    roles = [s for s in cluster.specs if s is not gateway]
    for spec in specs.values():
        for _ in range(spec.replicas):
            cluster.start(spec)
    for pod in PODS:
        pod.wait_ready()
    log(f"{len(PODS)} pods ready in {time.monotonic() - started:.0f}s")
    svc = next(n for n, sel in cluster.dns.services.items() if sel.items() <= gateway.labels.items())
    clients = [start_client(cluster, d) for d in cluster.clients]
    phase("warmup")
    out = os.path.join(ARGS.workdir, "load.json")
    load = subprocess.Popen([ARGS.bench, "rollout", "--service", f"http://{svc}:{gateway.ports['http']}",
                             "--phase-file", ARGS.phase_file, "--out", out, "--users", str(ARGS.users),
                             "--videos", str(ARGS.videos), "--concurrency", "8", "--rate", "6", "--deadline-ms", str(int(ARGS.rpc_deadline * 1000))],
                            env={**os.environ, "DOUYIN_JWT_SECRET": jwt_key(cluster.secrets)})
    time.sleep(8)
    failures, back, recovered = scenario(cluster, gateway, roles)
    if load.wait(timeout=60) != 0:
        raise SystemExit("the load generator failed")
    ph = json.load(open(out))
    for name, figures in ph.items():
        log(f"load in phase {name}: {figures['sent']} sent, {figures['failed']} failed "
            f"({figures['clean_refusals']} clean), p99 {figures['p99_ms']:.0f} ms, max {figures['max_ms']:.0f} ms"
            + (f"; first errors {figures['errors']}" if figures["errors"] else ""))
    empty = {"sent": 0, "failed": 0, "failed_reads": 0, "failed_writes": 0, "clean_refusals": 0, "p99_ms": 0,
             "errors": []}
    roll, kill, kgw, outage, recov = (ph.get(k, empty) for k in ("rolling", "kill", "kill-gateway", "outage",
                                                                  "recovered"))
    generated = [stop_client(*c) for c in clients]
    bad_counts = counts_check()
    for figures, (_, path) in zip(generated, clients):
        done = {a: t["ok"] for a, t in (figures or {}).get("by_action", {}).items() if t["ok"]}
        log(f"chart load generator: {figures}")
        if not figures or len(done) < 8:
            failures.append(f"the chart's load generator did not run its mix ({path}): {figures}")
    traffic = "; ".join(f"chart load generator: {f['actions']} actions on {f['accounts']} accounts it registered, "
                        f"{f['failed']} failed" for f in generated if f)
    if roll["failed"]:
        failures.append(f"rolling restart: {roll['failed']} failed: {roll['errors']}")
    if kill["failed_reads"] or kill["failed_writes"] != kill["clean_refusals"]:
        failures.append(f"SIGKILL: {kill['failed_reads']} failed reads, writes not refused cleanly: {kill['errors']}")
    if kgw["failed_reads"]:
        failures.append(f"gateway SIGKILL: {kgw['failed_reads']} failed reads: {kgw['errors']}")
    if outage["failed"] != outage["clean_refusals"] or outage["failed"] == 0:
        failures.append(f"outage: {outage['failed']} failed, {outage['clean_refusals']} clean: {outage['errors']}")
    if recov["failed"] or recovered is None:
        failures.append(f"no full recovery: {recov['failed']} failed after it: {recov['errors']}")
    if bad_counts:
        failures.append(f"counts differ from rows: {bad_counts}")
    served = max((b for b in back if b is not None), default=float("nan"))
    print(f"cluster-figure: rolling restart of {len(specs)} Deployments x 2 pods under the app mix: "
          f"{roll['sent']} requests, {roll['failed']} failed, p99 {roll['p99_ms']:.0f} ms; "
          f"SIGKILL of one replica per role: {kill['sent']} requests, {kill['failed_reads']} failed reads, "
          f"{kill['failed_writes']} writes refused cleanly, replacement serving <= {served:.1f} s after ready; "
          f"gateway SIGKILL: {kgw['failed_reads']} failed reads, {kgw['failed_writes']} writes lost; "
          f"{ARGS.outage_role} down: {outage['clean_refusals']}/{outage['failed']} clean 503s "
          f"(p99 {outage['p99_ms']:.0f} ms), serving {recovered or float('nan'):.1f} s after ready, "
          f"{recov['failed']} failed after; counts equal rows: {'yes' if not bad_counts else 'NO'}; "
          + (f"{traffic}; " if traffic else "")
          + f"{time.monotonic() - started:.0f} s", flush=True)
    for f in failures:
        log(f"FAIL {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    try:
        main()
    finally:
        for pod in PODS:
            if pod.alive():
                pod.proc.kill()
        for proc in CLIENTS:
            if proc.poll() is None:
                proc.kill()
