"""A real Prometheus scrapes a running mesh while load runs; then every dashboard
expression and every rule expression returns data through the HTTP API.

Usage: monitoring_scrape.py WORK BIN_DIR
WORK holds render.yaml and rules.yaml (monitoring-check.sh); BIN_DIR holds the
douyin and douyin-bench binaries. `douyin-bench mesh` runs the seven processes
(MariaDB and Redis when DOUYIN_TEST_DATABASE_URL / DOUYIN_TEST_REDIS_URL are set,
S3 when DOUYIN_S3_ENDPOINT is) on seeded data. The scrape config takes each rendered
PodMonitor endpoint's path and the labels its relabelings set (`role` from the
process's role, `release`) for the target that process's named port stands for
(the `admin` container port is the admin listener). The load is `douyin-bench load`
(every workload) plus what it does not do: an upload, a chat message pushed to an
open WebSocket session, and refused sign-ins.

A dashboard or rule expression that names a metric no process exports fails, naming
it; so does one that returns no data. An alert expression is asked with its
comparisons turned into `bool` ones (so it returns data whether or not it fires);
alerts on kube-state-metrics series, which no local process has, are skipped.
Prints one figure line.
"""
import base64, glob, json, os, pathlib, re, socket, subprocess, sys, time, urllib.error, urllib.parse, urllib.request, uuid

import yaml

from free_port import free_port
from monitoring_promql import metric_names

work, bins = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
docs = [d for d in yaml.safe_load_all((work / "render.yaml").read_text()) if d]
monitors = [d for d in docs if d["kind"] == "PodMonitor"]
assert monitors, "no PodMonitor rendered"
# Container ports of the chart's pods, by name, and the local listener each stands for.
LISTENER_OF_PORT = {"admin": "admin", "http": "http", "grpc": "grpc"}
KUBE_STATE = {"kube_pod_status_ready", "kube_pod_status_phase"}


prom = free_port()
listeners_file = work / "mesh.json"
env = dict(os.environ)
env.pop("DOUYIN_JWT_SECRET", None)  # the mesh and the load share the bench's secret
mesh_cmd = [str(bins / "douyin-bench"), "mesh", "--douyin-bin", str(bins / "douyin"), "--workdir", str(work / "mesh"),
            "--listeners", str(listeners_file), "--users", "100", "--videos", "500", "--health-interval-secs", "2"]
if os.environ.get("DOUYIN_TEST_DATABASE_URL"):
    mesh_cmd += ["--mysql-url", os.environ["DOUYIN_TEST_DATABASE_URL"], "--schema", f"douyin_monitoring_{os.getpid()}"]
    if os.environ.get("DOUYIN_TEST_REDIS_URL"):
        mesh_cmd += ["--redis-url", os.environ["DOUYIN_TEST_REDIS_URL"]]
if os.environ.get("DOUYIN_S3_ENDPOINT"):
    env.setdefault("DOUYIN_S3_BUCKET", f"douyin-monitoring-{os.getpid()}")
procs = {}


def until(what, check, deadline=90):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        for name, p in procs.items():
            if p.poll() is not None:
                raise SystemExit(f"FAIL {name} exited ({p.returncode}) while waiting for {what}; see {work}/{name}.log")
        time.sleep(0.2)
    raise SystemExit(f"FAIL timed out waiting for {what}")


def get(url, data=None, headers=None):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST" if data is not None else "GET")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def query(expr):
    return get(f"http://127.0.0.1:{prom}/api/v1/query?query=" + urllib.parse.quote(expr))["data"]["result"]


def websocket(base, token):
    """Opens the chat push socket (RFC 6455 handshake); returns the socket."""
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /douyin/message/ws/?token={token} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            raise SystemExit("FAIL the WebSocket upgrade was not answered")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise SystemExit(f"FAIL the WebSocket upgrade was refused: {head.decode(errors='replace')}")
    return s


def next_text_frame(s):
    """The payload of the next text frame (server frames are unmasked)."""
    def exactly(n):
        out = b""
        while len(out) < n:
            chunk = s.recv(n - len(out))
            if not chunk:
                raise SystemExit("FAIL the WebSocket closed before a message was pushed")
            out += chunk
        return out
    while True:
        b0, b1 = exactly(2)
        n = b1 & 0x7F
        if n == 126:
            n = int.from_bytes(exactly(2), "big")
        elif n == 127:
            n = int.from_bytes(exactly(8), "big")
        payload = exactly(n)
        if b0 & 0x0F == 1:
            return payload.decode()


def multipart(fields, file_field, file_name, content):
    boundary = uuid.uuid4().hex
    body = b""
    for k, v in fields.items():
        body += f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
    body += (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{file_name}"\r\n'
             "Content-Type: video/mp4\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def bool_comparisons(expr):
    """`a > 1` becomes `a > bool 1` outside label matchers and strings."""
    out, depth, i, quote = [], 0, 0, None
    while i < len(expr):
        c = expr[i]
        if quote:
            out.append(c)
            if c == "\\":
                out.append(expr[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
            out.append(c)
        elif c == "{":
            depth += 1
            out.append(c)
        elif c == "}":
            depth -= 1
            out.append(c)
        elif depth == 0 and (m := re.match(r"(==|!=|>=|<=|>|<)(?!\s*bool\b)", expr[i:])):
            out.append(m.group(1) + " bool")
            i += len(m.group(1))
            continue
        else:
            out.append(c)
        i += 1
    return "".join(out)


try:
    procs["mesh"] = subprocess.Popen(mesh_cmd, env=env, stdin=subprocess.PIPE, stdout=open(work / "mesh.log", "w"),
                                     stderr=subprocess.STDOUT)
    until("the mesh", listeners_file.exists, deadline=240)
    mesh = json.loads(listeners_file.read_text())
    base = mesh["url"]

    targets = []
    for monitor in monitors:
        namespace = monitor["metadata"]["namespace"]
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            listener = LISTENER_OF_PORT[endpoint["port"]]
            job = f"{namespace}/{monitor['metadata']['name']}"
            for p in mesh["processes"]:
                # What the relabelings set from the pod's labels, as the chart labels the pod.
                pod_labels = {"app_kubernetes_io_component": p["role"], "app_kubernetes_io_instance": "douyin"}
                labels = {"namespace": namespace, "pod": f"douyin-{p['role']}-0"}
                for r in endpoint.get("relabelings", []):
                    (source,) = r["sourceLabels"]
                    labels[r["targetLabel"]] = pod_labels[source.removeprefix("__meta_kubernetes_pod_label_")]
                targets.append({"job_name": f"{job}/{p['role']}", "metrics_path": endpoint["path"],
                                "scrape_interval": "1s",
                                "static_configs": [{"targets": [f"127.0.0.1:{p[listener]}"], "labels": labels}]})
    (work / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(work / "rules.yaml")], "scrape_configs": targets}))
    procs["prometheus"] = subprocess.Popen(
        ["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{prom}", "--enable-feature=exemplar-storage"],
        stdout=open(work / "prometheus.log", "w"), stderr=subprocess.STDOUT)
    until("Prometheus", lambda: urllib.request.urlopen(f"http://127.0.0.1:{prom}/-/ready", timeout=2).status == 200)
    until("every target up", lambda: len(query("up == 1")) == len(targets))

    # What the bench does not do: an upload, a pushed chat message, refused sign-ins.
    alice = get(base + "/douyin/user/register/?username=monitor-a&password=monitor123", b"")
    bob = get(base + "/douyin/user/register/?username=monitor-b&password=monitor123", b"")
    sock = websocket(base, alice["token"])
    body, headers = multipart({"token": alice["token"], "title": "monitored"}, "data", "v.mp4", pathlib.Path("services/video/demo/demo1.mp4").read_bytes())
    published = get(base + "/douyin/publish/action/", body, headers)
    if published["status_code"] != 0:
        raise SystemExit(f"FAIL publish: {published}")
    sent = get(base + f"/douyin/message/action/?token={alice['token']}&to_user_id={bob['user_id']}&action_type=1"
                      "&content=monitored", b"")
    if sent["status_code"] != 0:
        raise SystemExit(f"FAIL message: {sent}")
    if "monitored" not in next_text_frame(sock):
        raise SystemExit("FAIL the pushed message is not the one sent")
    for _ in range(3):
        get(base + "/douyin/user/login/?username=monitor-a&password=wrong-password", b"")

    load = subprocess.run(
        [str(bins / "douyin-bench"), "load", "--url", base, "--users", "100", "--videos", "500", "--concurrency", "4",
         "--warmup", "0", "--duration", "1.5", "--workloads",
         "feed-token,feed-anon,user-info,favorite-list,chat-poll,like-unlike,comment,follow"],
        env=env, capture_output=True, text=True, timeout=120)
    (work / "load.log").write_text(load.stdout + load.stderr)
    if load.returncode != 0:
        raise SystemExit(f"FAIL douyin-bench load:\n{load.stdout}{load.stderr}")
    requests = sum(int(m) for m in re.findall(r"(\d+) requests", load.stdout))

    rules = yaml.safe_load((work / "rules.yaml").read_text())
    exprs = []
    for f in sorted(glob.glob("helm/douyin/dashboards/*.json")):
        dash = json.load(open(f))
        for p in dash["panels"]:
            for t in p["targets"]:
                e = t["expr"].replace("$__rate_interval", "1m").replace("$namespace", "douyin").replace("$release", "douyin")
                exprs.append((f"{pathlib.Path(f).name} panel {p['title']!r}", e, "panel"))
    skipped = 0
    for g in rules["groups"]:
        for r in g["rules"]:
            if "record" in r:
                exprs.append((f"recording rule {r['record']}", r["record"], "record"))
            elif metric_names(r["expr"]) & KUBE_STATE:
                skipped += 1
            else:
                exprs.append((f"alert {r['alert']}", bool_comparisons(r["expr"]), "alert"))
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}

    # What the processes export: every family their /metrics declares (an error
    # counter without errors yet has no sample, but is exported).
    exported = set()
    for t in targets:
        (target,) = t["static_configs"][0]["targets"]
        with urllib.request.urlopen(f"http://{target}{t['metrics_path']}", timeout=10) as response:
            text = response.read().decode()
        for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M):
            suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}.get(kind, [""])
            exported.update(name + suffix for suffix in suffixes)
    unexported = [(w, sorted(metric_names(e) - exported - recorded - {"up"})) for w, e, _ in exprs]
    unexported = [(w, names) for w, names in unexported if names]
    if unexported:
        print("\n".join(f"FAIL {w} names metrics no process exports: {names}" for w, names in unexported), file=sys.stderr)
        raise SystemExit(1)
    missing = []

    def all_answer():
        missing[:] = [w for w, e, _ in exprs if not query(e)]
        return not missing
    try:
        until("every expression to return data", all_answer, deadline=45)
    except SystemExit:
        print("\n".join(f"FAIL no data: {w}" for w in missing), file=sys.stderr)
        raise
    series = int(query('count({__name__=~"douyin_.+"})')[0]["value"][1])
    kinds = {k: sum(1 for *_, kind in exprs if kind == k) for k in ("panel", "record", "alert")}
    figure = (f"{series} series scraped from {len(targets)} processes under {requests} bench requests; "
              f"{len(exprs)} expressions returned data ({kinds['panel']} panel, {kinds['record']} recording, "
              f"{kinds['alert']} alert; {skipped} kube-state-metrics alerts skipped)")
    (work / "figure.scrape").write_text(figure)
    print(f"scrape: {figure}")
finally:
    for name in ("prometheus", "mesh"):
        p = procs.get(name)
        if p and p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
