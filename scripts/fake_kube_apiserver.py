#!/usr/bin/env python3
"""A tiny in-memory stand-in for kube-apiserver, for trying ms_deployer and msctl without a cluster.

Plain HTTP like `kubectl proxy` (the shipped conf/ms_deployer.json points at 127.0.0.1:8001). Stores objects by
resource/namespace/name; create (409 AlreadyExists), get/delete (404 NotFound), merge/strategic patch
(approximated by a JSON merge patch), lists with labelSelector (k=v, k!=v, k) and fieldSelector; every
Deployment gets `replicas` Running+Ready pods with loopback IPs. Errors are Kubernetes `Status` objects.
Standard library only. The Swift tests use their own in-process fake (Tests/DeployerTests/FakeKubeAPIServer.swift).

    python3 scripts/fake_kube_apiserver.py [--port 8001]
"""
import argparse
import hashlib
import json
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KINDS = {"configmaps": ("ConfigMap", "v1"), "services": ("Service", "v1"), "pods": ("Pod", "v1"),
         "serviceaccounts": ("ServiceAccount", "v1"), "deployments": ("Deployment", "apps/v1"),
         "roles": ("Role", "rbac.authorization.k8s.io/v1"), "rolebindings": ("RoleBinding", "rbac.authorization.k8s.io/v1"),
         "poddisruptionbudgets": ("PodDisruptionBudget", "policy/v1")}
LOCK = threading.Lock()
OBJECTS = {}
COUNTERS = {"rv": 100, "ip": 1}


def status(code, reason, message):
    return code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                  "message": message, "reason": reason, "code": code}


def merge(target, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


def next_rv():
    COUNTERS["rv"] += 1
    return str(COUNTERS["rv"])


def reconcile_pods(ns, dep):
    name = dep["metadata"]["name"]
    template = dep["spec"].get("template", {})
    h = hashlib.sha1(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
    want = dep["spec"].get("replicas", 1)
    mine = [k for k, v in OBJECTS.items() if k[0] == "pods" and k[1] == ns and v["metadata"]["labels"].get("fake-owner") == name]
    current = [k for k in mine if OBJECTS[k]["metadata"]["labels"].get("pod-template-hash") == h]
    for k in mine:
        if k not in current:
            del OBJECTS[k]
    current.sort()
    while len(current) > want:
        del OBJECTS[current.pop()]
    i = 0
    while len(current) < want:
        pod = "%s-%s-%d" % (name, h, i)
        i += 1
        key = ("pods", ns, pod)
        if key in OBJECTS:
            continue
        labels = dict(template.get("metadata", {}).get("labels", {}), **{"pod-template-hash": h, "fake-owner": name})
        ip = "127.1.%d.%d" % (COUNTERS["ip"] // 250, COUNTERS["ip"] % 250 + 2)
        COUNTERS["ip"] += 1
        containers = [{"name": c.get("name"), "ready": True, "state": {"running": {}}} for c in template.get("spec", {}).get("containers", [])]
        OBJECTS[key] = {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"name": pod, "namespace": ns, "labels": labels, "resourceVersion": next_rv()},
                        "spec": template.get("spec", {}),
                        "status": {"phase": "Running", "podIP": ip, "hostIP": "192.168.0.10",
                                   "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": containers}}
        current.append(key)


def matches(obj, label_sel, field_sel):
    labels = obj.get("metadata", {}).get("labels", {})
    for term in filter(None, (label_sel or "").split(",")):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k) != v.lstrip("="):
                return False
        elif term not in labels:
            return False
    for term in filter(None, (field_sel or "").split(",")):
        k, v = term.split("=", 1)
        cur = obj
        for p in k.split("."):
            cur = cur.get(p) if isinstance(cur, dict) else None
        if cur != v:
            return False
    return True


def handle(method, path, query, body):
    parts = [p for p in path.split("/") if p]
    if parts[:1] == ["api"] and len(parts) >= 3:
        version, rest = parts[1], parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 4:
        version, rest = parts[1] + "/" + parts[2], parts[3:]
    else:
        return status(404, "NotFound", "the server could not find the requested resource")
    ns = None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        ns, rest = rest[1], rest[2:]
    if not rest or rest[0] not in KINDS or KINDS[rest[0]][1] != version:
        return status(404, "NotFound", "the server could not find the requested resource")
    resource, name = rest[0], (rest[1] if len(rest) > 1 else None)
    kind = KINDS[resource][0]
    with LOCK:
        if method == "GET" and name is None:
            items = [v for k, v in sorted(OBJECTS.items()) if k[0] == resource and (ns is None or k[1] == ns)
                     and matches(v, query.get("labelSelector"), query.get("fieldSelector"))]
            return 200, {"kind": kind + "List", "apiVersion": version, "metadata": {"resourceVersion": str(COUNTERS["rv"])}, "items": items}
        if method == "POST" and name is None:
            if not isinstance(body, dict) or body.get("kind") != kind:
                return status(400, "BadRequest", "the body is not a %s" % kind)
            name = body.get("metadata", {}).get("name")
            if not name:
                return status(422, "Invalid", "%s \"\" is invalid: metadata.name: Required value" % kind)
            key = (resource, ns, name)
            if key in OBJECTS:
                return status(409, "AlreadyExists", "%s \"%s\" already exists" % (resource, name))
            obj = merge(body, {"metadata": {"namespace": ns, "uid": str(uuid.uuid4()), "resourceVersion": next_rv(),
                                            "creationTimestamp": "2026-01-01T00:00:00Z"}})
            OBJECTS[key] = obj
            if resource == "deployments":
                reconcile_pods(ns, obj)
            return 201, obj
        key = (resource, ns, name)
        if key not in OBJECTS:
            return status(404, "NotFound", "%s \"%s\" not found" % (resource, name))
        if method == "GET":
            return 200, OBJECTS[key]
        if method == "PATCH":
            obj = merge(OBJECTS[key], body)
            obj["metadata"]["resourceVersion"] = next_rv()
            OBJECTS[key] = obj
            if resource == "deployments":
                reconcile_pods(ns, obj)
            return 200, obj
        if method == "DELETE":
            del OBJECTS[key]
            if resource == "deployments":
                for k in [k for k, v in OBJECTS.items() if k[0] == "pods" and k[1] == ns and v["metadata"]["labels"].get("fake-owner") == name]:
                    del OBJECTS[k]
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name, "kind": resource}}
    return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            code, reply = status(400, "BadRequest", "the body is not JSON")
        else:
            code, reply = handle(self.command, url.path, query, body)
        data = json.dumps(reply).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

    def log_message(self, fmt, *args):
        print("%s %s" % (self.command, self.path), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8001)
    args = ap.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print("fake kube-apiserver on http://%s:%d" % (args.host, args.port), flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
