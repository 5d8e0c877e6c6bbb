"""Pods, probes and cluster DNS for .ci/cluster.sh, modelled on what the kubelet,
the endpoints controller and the Deployment controller do, driven by the
Deployments, Services and ConfigMap of `helm template`.

A pod is one process of the douyin binary with its own loopback address. Its
command, environment and probes come from the rendered pod spec; the only
changes are the ones a pod network makes: a listener on 0.0.0.0 binds the pod's
own address, and /data is the pod's own directory. Service names resolve through
a hosts file (bind-mounted over /etc/hosts in this mount namespace) to the ready
pods of the Service's selector and nothing else.
"""

import os
import random
import re
import signal
import subprocess
import threading
import time
import urllib.request

LOCK = threading.RLock()


def log(msg):
    print(f"[cluster {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Spec:
    """What one Deployment renders: the pod template and the rollout strategy."""

    def __init__(self, doc):
        self.name = doc["metadata"]["name"]
        spec = doc["spec"]
        self.replicas = spec.get("replicas", 1)
        self.strategy = spec["strategy"]["rollingUpdate"]
        pod = spec["template"]["spec"]
        self.labels = spec["template"]["metadata"]["labels"]
        self.grace = pod["terminationGracePeriodSeconds"]
        c = pod["containers"][0]
        self.container = c
        self.args = c.get("args", [])
        pre = c.get("lifecycle", {}).get("preStop", {})
        self.pre_stop = pre.get("sleep", {}).get("seconds", 0)
        if pre and "sleep" not in pre:
            raise SystemExit(f"{self.name}: only preStop sleep is modelled, got {pre}")
        self.probes = {k: c[f"{k}Probe"] for k in ("startup", "readiness", "liveness") if f"{k}Probe" in c}
        self.ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}


def expand(value, env):
    """Kubernetes' $(VAR) references to earlier variables."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def pod_env(spec, pod_name, ip, config_maps, secrets, data_dir):
    """The container's environment as the kubelet builds it, on the pod network."""
    env = {}
    c = spec.container
    for src in c.get("envFrom", []):
        if "configMapRef" in src:
            env.update(config_maps[src["configMapRef"]["name"]])
        elif "secretRef" in src:
            name = src["secretRef"]["name"]
            if name not in secrets and not src["secretRef"].get("optional"):
                raise SystemExit(f"{spec.name}: Secret {name} is missing")
            env.update(secrets.get(name, {}))
    fields = {"metadata.name": pod_name, "metadata.namespace": "douyin", "spec.nodeName": "harness-node"}
    for item in c.get("env", []):
        if "value" in item:
            env[item["name"]] = expand(str(item["value"]), env)
        elif "fieldRef" in item.get("valueFrom", {}):
            env[item["name"]] = fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = secrets[ref["name"]][ref["key"]]
    for key, value in env.items():
        if value.startswith("0.0.0.0:"):
            env[key] = f"{ip}:{value.split(':', 1)[1]}"
    env["DOUYIN_DATA_DIR"] = data_dir
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    return env


class Dns:
    """Service name -> addresses of its ready pods, written to the hosts file.
    The endpoints controller runs on its own: a change is published after a
    random 0-1 s, with no ordering against what the kubelet does."""

    def __init__(self, hosts_file, services):
        self.hosts_file, self.services, self.pods = hosts_file, services, []
        self.write()

    def changed(self):
        threading.Timer(random.uniform(0.0, 1.0), self.write).start()

    def write(self):
        with LOCK:
            lines = ["127.0.0.1 localhost"]
            for svc_name, selector in self.services.items():
                for pod in self.pods:
                    if pod.ready and not pod.terminating and selector.items() <= pod.spec.labels.items():
                        lines.append(f"{pod.ip} {svc_name}")
            text = "\n".join(lines) + "\n"
            # In place (the bind mount follows the file, not its name), and
            # never empty on the way: the new text over the old, then the rest
            # cut, so a lookup in between sees old or new lines, not nothing.
            with open(self.hosts_file, "r+") as f:
                f.write(text)
                f.truncate()


class Pod:
    """One replica: the process and the kubelet's probes of it."""

    def __init__(self, spec, name, ip, env, binary, dns, workdir):
        self.spec, self.name, self.ip, self.dns = spec, name, ip, dns
        self.binary_for_probe = binary
        self.ready = self.terminating = self.started = False
        self.ready_at = None
        self.exit_code = None
        self.killed_at_grace = False
        self.log_path = os.path.join(workdir, f"{name}.log")
        with open(self.log_path, "w") as out:
            self.proc = subprocess.Popen([binary] + spec.args, env=env, stdout=out, stderr=subprocess.STDOUT)
        with LOCK:
            dns.pods.append(self)
        threading.Thread(target=self.kubelet, daemon=True).start()

    def probe(self, p):
        timeout = p.get("timeoutSeconds", 1)
        try:
            if "httpGet" in p:
                url = f"http://{self.ip}:{p['httpGet']['port']}{p['httpGet']['path']}"
                with urllib.request.urlopen(url, timeout=timeout) as r:
                    return 200 <= r.status < 400
            if "grpc" in p:
                g = p["grpc"]
                cmd = [self.binary_for_probe, "health", "--addr", f"http://{self.ip}:{g['port']}",
                       "--service", g.get("service", "")]
                return subprocess.run(cmd, capture_output=True, timeout=timeout + 1).returncode == 0
        except Exception:
            return False
        raise SystemExit(f"{self.spec.name}: unsupported probe {p}")

    def kubelet(self):
        """Startup probe until it succeeds, then readiness at its period
        (ready after one success, unready after failureThreshold failures)."""
        startup = self.spec.probes.get("startup")
        while startup and self.alive() and not self.probe(startup):
            time.sleep(startup["periodSeconds"])
        self.started = True
        readiness = self.spec.probes["readiness"]
        failures = 0
        while self.alive():
            ok = self.probe(readiness)
            failures = 0 if ok else failures + 1
            ready = ok or (self.ready and failures < readiness.get("failureThreshold", 3))
            self.set_ready(ready and self.alive())
            time.sleep(readiness["periodSeconds"])
        self.set_ready(False)

    def set_ready(self, ready):
        if ready != self.ready:
            self.ready = ready
            if ready:
                self.ready_at = time.monotonic()
            self.dns.changed()

    def alive(self):
        return self.proc.poll() is None

    def wait_ready(self, timeout=120):
        deadline = time.monotonic() + timeout
        while not self.ready:
            if not self.alive() or time.monotonic() > deadline:
                raise SystemExit(f"{self.name} did not become ready; log {self.log_path}")
            time.sleep(0.1)

    def terminate(self):
        """Pod deletion: endpoints drop it while the kubelet runs preStop, then
        SIGTERM; SIGKILL at terminationGracePeriodSeconds. Returns the thread."""
        self.terminating = True
        self.dns.changed()

        def run():
            started = time.monotonic()
            time.sleep(self.spec.pre_stop)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.exit_code = self.proc.wait(timeout=max(0.1, self.spec.grace - (time.monotonic() - started)))
            except subprocess.TimeoutExpired:
                self.killed_at_grace = True
                self.proc.kill()
                self.exit_code = self.proc.wait()

        t = threading.Thread(target=run, daemon=True)
        t.start()
        return t

    def kill(self):
        """SIGKILL: the container dies; the kubelet marks the pod not ready."""
        self.proc.kill()
        self.exit_code = self.proc.wait()
        self.set_ready(False)

    def served(self, grpc):
        """Calls this pod has served to anything but probes (its /metrics)."""
        port = self.spec.ports["admin"]
        try:
            with urllib.request.urlopen(f"http://{self.ip}:{port}/metrics", timeout=2) as r:
                text = r.read().decode()
        except Exception:
            return 0
        metric = "douyin_rpc_server_requests_total" if grpc else "douyin_http_server_requests_total"
        total = 0.0
        for line in text.splitlines():
            if line.startswith(metric + "{") and not re.search(r"health|readyz|healthz", line):
                total += float(line.rsplit(" ", 1)[1])
        return total
