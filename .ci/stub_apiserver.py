"""A Kubernetes API server stand-in for the packaging checks (.ci/k8s-check.sh):
discovery for the built-in kinds and for every CRD under `--crds` (so kubectl and
helm map each object to its resource), GETs answered from the JSON files in
`--objects` (NAME = the request path with / as _), an empty list for secrets and
configmaps, 404 for anything else. Every request path goes to `--log`.

    python3 .ci/stub_apiserver.py --port-file F [--objects DIR] [--crds DIR] [--log F]

It listens on a free loopback port and writes the port to --port-file once it
accepts connections.
"""

import argparse
import json
import pathlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

BUILTIN = {  # group/version -> [(kind, plural, namespaced)]
    "v1": [("Namespace", "namespaces", False), ("ConfigMap", "configmaps", True), ("Secret", "secrets", True),
           ("Service", "services", True), ("ServiceAccount", "serviceaccounts", True), ("Pod", "pods", True),
           ("PersistentVolumeClaim", "persistentvolumeclaims", True), ("Endpoints", "endpoints", True),
           ("LimitRange", "limitranges", True), ("ResourceQuota", "resourcequotas", True)],
    "apps/v1": [("Deployment", "deployments", True), ("StatefulSet", "statefulsets", True),
                ("DaemonSet", "daemonsets", True), ("ReplicaSet", "replicasets", True)],
    "batch/v1": [("Job", "jobs", True), ("CronJob", "cronjobs", True)],
    "autoscaling/v2": [("HorizontalPodAutoscaler", "horizontalpodautoscalers", True)],
    "policy/v1": [("PodDisruptionBudget", "poddisruptionbudgets", True)],
    "networking.k8s.io/v1": [("NetworkPolicy", "networkpolicies", True), ("Ingress", "ingresses", True),
                             ("IngressClass", "ingressclasses", False)],
    "rbac.authorization.k8s.io/v1": [("Role", "roles", True), ("RoleBinding", "rolebindings", True),
                                     ("ClusterRole", "clusterroles", False),
                                     ("ClusterRoleBinding", "clusterrolebindings", False)],
    "apiextensions.k8s.io/v1": [("CustomResourceDefinition", "customresourcedefinitions", False)],
    "coordination.k8s.io/v1": [("Lease", "leases", True)],
    "scheduling.k8s.io/v1": [("PriorityClass", "priorityclasses", False)],
    "admissionregistration.k8s.io/v1": [
        ("ValidatingWebhookConfiguration", "validatingwebhookconfigurations", False),
        ("MutatingWebhookConfiguration", "mutatingwebhookconfigurations", False)],
}

NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "NotFound",
             "code": 404, "message": "not found"}


def discovery(crds_dir):
    resources = {gv: list(kinds) for gv, kinds in BUILTIN.items()}
    for path in sorted(pathlib.Path(crds_dir).rglob("*.y*ml")) if crds_dir else []:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                spec = doc["spec"]
                for v in spec["versions"]:
                    resources.setdefault(f"{spec['group']}/{v['name']}", []).append(
                        (spec["names"]["kind"], spec["names"]["plural"], spec["scope"] == "Namespaced"))
    groups = {}
    for gv in resources:
        if "/" in gv:
            g, v = gv.split("/")
            groups.setdefault(g, []).append({"groupVersion": gv, "version": v})
    return resources, groups


def resource_list(resources, gv):
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": [
        {"name": plural, "singularName": kind.lower(), "namespaced": ns, "kind": kind,
         "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
        for kind, plural, ns in resources[gv]]}


def handler(resources, groups, objects, log):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def answer(self, path):
            if path == "/version":
                return 200, {"major": "1", "minor": "34", "gitVersion": "v1.34.0"}
            if path == "/api":
                return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
            if path == "/apis":
                return 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                    {"name": g, "versions": vs, "preferredVersion": vs[0]} for g, vs in groups.items()]}
            if path == "/api/v1":
                return 200, resource_list(resources, "v1")
            if path.startswith("/apis/") and path.count("/") == 3 and path[6:] in resources:
                return 200, resource_list(resources, path[6:])
            stored = objects / (path.strip("/").replace("/", "_") + ".json") if objects else None
            if stored and stored.exists():
                return 200, json.loads(stored.read_text())
            if path.endswith("/secrets") or path.endswith("/configmaps"):
                return 200, {"kind": "List", "apiVersion": "v1", "metadata": {}, "items": []}
            return 404, NOT_FOUND

        def do_GET(self):
            if log:
                with open(log, "a") as f:
                    f.write(self.path + "\n")
            self.reply(*self.answer(self.path.split("?")[0].rstrip("/")))

    return Handler


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port-file", required=True)
    p.add_argument("--objects")
    p.add_argument("--crds")
    p.add_argument("--log")
    args = p.parse_args()
    resources, groups = discovery(args.crds)
    objects = pathlib.Path(args.objects) if args.objects else None
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler(resources, groups, objects, args.log))
    pathlib.Path(args.port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


if __name__ == "__main__":
    main()
