"""A real Prometheus scrapes a running douyin process while load runs; then every
dashboard expression and every recording rule returns data through the HTTP API.

Usage: monitoring_scrape.py WORK DOUYIN_BIN
WORK holds render.yaml and rules.yaml (monitoring-check.sh). The process runs every
role (`serve all`, embedded SQLite) on free local ports; the scrape config takes the
path from the rendered PodMonitor and the labels its relabelings add (role is `all`,
so expressions that select one role's series are asked with the role matcher removed).
"""
import glob, json, os, pathlib, re, socket, subprocess, sys, time, urllib.error, urllib.parse, urllib.request

import yaml

work, binary = pathlib.Path(sys.argv[1]), sys.argv[2]
docs = [d for d in yaml.safe_load_all((work / "render.yaml").read_text()) if d]
monitor = next(d for d in docs if d["kind"] == "PodMonitor")
endpoint = monitor["spec"]["podMetricsEndpoints"][0]
assert endpoint["port"] == "admin", endpoint


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


http, grpc, admin, prom = (free_port() for _ in range(4))
labels = {"namespace": "douyin", "release": "douyin", "role": "all", "pod": "douyin-all-0"}
(work / "prometheus.yml").write_text(yaml.safe_dump({
    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
    "rule_files": [str(work / "rules.yaml")],
    "scrape_configs": [{"job_name": "douyin/douyin", "metrics_path": endpoint["path"],
                        "static_configs": [{"targets": [f"127.0.0.1:{admin}"], "labels": labels}]}]}))
env = dict(os.environ, DOUYIN_HTTP_ADDR=f"127.0.0.1:{http}", DOUYIN_GRPC_ADDR=f"127.0.0.1:{grpc}",
           DOUYIN_ADMIN_ADDR=f"127.0.0.1:{admin}", DOUYIN_DATA_DIR=str(work / "data"), DOUYIN_DEMO_CONTENT="true",
           DOUYIN_JWT_SECRET="monitoring-check-" + "k" * 32, DOUYIN_LOG_FORMAT="json",
           DOUYIN_RATE_LIMIT_IP_PER_SEC="100000")
for k in ("DOUYIN_DATABASE_URL", "DOUYIN_REDIS_URL", "DOUYIN_S3_ENDPOINT"):
    env.pop(k, None)
procs = [subprocess.Popen([binary, "serve", "all"], env=env, stdout=open(work / "douyin.log", "w"), stderr=subprocess.STDOUT),
         subprocess.Popen(["prometheus", f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'tsdb'}",
                           f"--web.listen-address=127.0.0.1:{prom}"], stdout=open(work / "prometheus.log", "w"), stderr=subprocess.STDOUT)]


def get(url, data=None):
    return json.load(urllib.request.urlopen(urllib.request.Request(url, data=data, method="POST" if data is not None else "GET"), timeout=5))


def until(what, check, deadline=60):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"FAIL timed out waiting for {what}")


def query(expr):
    return get(f"http://127.0.0.1:{prom}/api/v1/query?query=" + urllib.parse.quote(expr))["data"]["result"]


try:
    base = f"http://127.0.0.1:{http}"
    until("the gateway", lambda: get(base + "/douyin/feed/")["status_code"] == 0)
    until("Prometheus", lambda: urllib.request.urlopen(f"http://127.0.0.1:{prom}/-/ready", timeout=2).status == 200)
    token = get(base + "/douyin/user/register/?username=monitor&password=monitor123", b"")["token"]
    video = get(base + "/douyin/feed/")["video_list"][0]["id"]
    end = time.monotonic() + 15
    requests = 0
    while time.monotonic() < end:
        for path in (f"/douyin/feed/", f"/douyin/feed/?token={token}",
                     f"/douyin/favorite/action/?token={token}&video_id={video}&action_type={requests % 2 + 1}",
                     f"/douyin/comment/action/?token={token}&video_id={video}&action_type=1&comment_text=hi",
                     "/douyin/user/login/?username=nobody&password=wrong-password"):
            try:
                get(base + path, b"")
            except urllib.error.HTTPError:
                pass  # refusals are counted too
            requests += 1
    rules = yaml.safe_load((work / "rules.yaml").read_text())
    recorded = [r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r]
    exprs = []
    for f in sorted(glob.glob("helm/douyin/dashboards/*.json")):
        for p in json.load(open(f))["panels"]:
            for t in p["targets"]:
                e = t["expr"].replace("$__rate_interval", "1m").replace("$namespace", "douyin").replace("$release", "douyin")
                exprs.append((f"{pathlib.Path(f).name} {p['title']!r}", re.sub(r',role=~?"[^"]*"', "", e)))
    exprs += [(f"recording rule {r}", r) for r in recorded]
    missing = []

    def all_answer():
        missing[:] = [w for w, e in exprs if not query(e)]
        return not missing
    try:
        until("every expression to return data", all_answer, deadline=30)
    except SystemExit:
        print("\n".join(f"FAIL no data: {w}" for w in missing), file=sys.stderr)
        raise
    series = query('count({__name__=~"douyin_.+"})')[0]["value"][1]
    print(f"scrape: {series} series scraped, {requests} requests, {len(exprs)} expressions returned data")
finally:
    for p in procs:
        p.terminate()
        p.wait(timeout=20)
