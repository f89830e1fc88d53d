#!/usr/bin/env python3
"""Runs what `msctl render` prints on this machine, the way kubelet would: a test tool, not a Kubernetes.

    msctl render infer_server -f conf/infer_server_pd_cluster.json > pd.yaml
    python3 scripts/kube_local.py pd.yaml [--net 60] [--bin DIR]        # Ctrl-C stops everything

What it does (each item as kubelet / the control plane does it):
- every Deployment's `replicas` pods run as local processes, each pod on its own loopback address 127.0.N.<10+k>
  (never reused: a replacement pod gets a new name and a new IP, as a rescheduled pod does);
- ConfigMap (and Secret) volumes are materialized in kubelet's atomic-writer layout, at the mount path inside the
  pod's root folder: `<key> -> ..data/<key>`, `..data -> ..<timestamp>`, files with the volume's `defaultMode`;
- env: plain values, `$(VAR)` expansion in env, command and args, and the downward API fields `status.podIP`,
  `status.hostIP`, `metadata.name`, `metadata.namespace`;
- a pod with a ServiceAccount and `automountServiceAccountToken: true` gets `token`, `ca.crt`, `namespace` and
  `KUBERNETES_SERVICE_HOST`/`_PORT`, pointing at a minimal pod API over HTTPS: `GET /api/v1/namespaces/NS/pods`
  (equality `labelSelector`) answered only for a token whose ServiceAccount a RoleBinding binds to a Role that
  allows `list` on `pods` in that namespace (else 403, as RBAC does);
- each Service gets its own loopback IP 127.0.N.<2+i> and a TCP forwarder on its port to the Ready pods its
  selector matches (kube-proxy semantics: round robin, only Ready endpoints); `service_ip(name)` resolves names;
- startup, readiness and liveness probes (exec, httpGet, tcpSocket) with their periods and thresholds: a failed
  startup or liveness probe restarts the container (same pod, same IP), readiness gates the Service endpoints;
  a container that exits is restarted (restartPolicy Always, back-off capped at 10 s).

What it does not emulate (so do not read more into a green run): no container image or filesystem isolation —
a pod runs with its root folder as working directory and every env value, and every string of a mounted JSON file,
naming a path under a mount is rewritten to the materialized path (the one rewrite it does: a mount namespace would
make it unneeded), and the image's working files (`conf/model_config`,
`conf/machine_config`) are copied there; the MindIE Server image's entrypoint (`.../run/run.sh`) is replaced by
`mindie_sim --infer-mode dmi` on the pod IP (data port = the container's first containerPort, management 1026,
metrics 1027), and an exec probe calling `http_client_ctl IP PORT PATH TIMEOUT` is run as the HTTP GET it performs;
hostPath volumes are not checked; no scheduler, nodes, resources, PodDisruptionBudgets, NetworkPolicies, DNS
(`service_ip()` instead), watches or rolling-update surge accounting (an update is not applied at all: the
tool runs one rendering); no etcd (with `pd_cluster.ha` the address the spec names must already serve, as
`tests_py/test_kube_local.py` arranges); pods are Running from their process start.
Standard library plus PyYAML.
"""
import argparse
import base64
import hashlib
import http.server
import itertools
import json
import os
import random
import re
import shlex
import shutil
import signal
import socket
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVER_ENTRYPOINT = "/mnt/mindie-service/ms/run/run.sh"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def log(msg):
    print(f"[kube_local] {msg}", file=sys.stderr, flush=True)


def rand5():
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(5))


def selector_matches(selector, labels):
    return all(labels.get(k) == v for k, v in (selector or {}).items())


def label_selector_matches(text, labels):
    """Equality-based label selector: k=v, k==v, k!=v, k, !k."""
    for term in filter(None, (t.strip() for t in (text or "").split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k) != v.lstrip("="):
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def expand(text, env):
    """Kubernetes `$(VAR)` expansion; `$$(VAR)` escapes; unknown references stay as written."""
    return re.sub(r"\$(\$)?\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: f"$({m.group(2)})" if m.group(1) else env.get(m.group(2), m.group(0)), text)


class Pod:
    def __init__(self, cluster, deployment, ip):
        self.cluster = cluster
        self.deployment = deployment
        meta = deployment["metadata"]
        tmpl = deployment["spec"]["template"]
        h = hashlib.sha1(json.dumps(tmpl, sort_keys=True).encode()).hexdigest()[:10]
        self.name = f"{meta['name']}-{h}-{rand5()}"
        self.namespace = meta.get("namespace", "default")
        self.labels = dict(tmpl["metadata"].get("labels", {}), **{"pod-template-hash": h})
        self.annotations = dict(tmpl["metadata"].get("annotations", {}))
        self.spec = tmpl["spec"]
        self.container = self.spec["containers"][0]
        self.ip = ip
        self.root = os.path.join(cluster.workdir, "pods", self.name)
        self.proc = None
        self.log_path = os.path.join(cluster.workdir, "logs", self.name + ".log")
        self.started = False  # startup probe passed
        self.ready = False
        self.restarts = 0
        self.terminating = False
        self.gone = False
        self.start_time = None
        self.lock = threading.Lock()

    # ------------------------------------------------------------ filesystem and env
    def materialize(self):
        os.makedirs(self.root, exist_ok=True)
        # the image's working files: the Controller reads its model and machine files relative to its cwd
        for sub in ("conf/model_config", "conf/machine_config"):
            dst = os.path.join(self.root, sub)
            if not os.path.exists(dst):
                shutil.copytree(os.path.join(ROOT, sub), dst)
                for f in os.listdir(dst):
                    os.chmod(os.path.join(dst, f), 0o640)
        os.makedirs(os.path.join(self.root, "logs"), exist_ok=True)
        volumes = {v["name"]: v for v in self.spec.get("volumes", [])}
        mounts = self.container.get("volumeMounts", [])
        # every mount's materialized path is known before any file is written: a config file may name a file of
        # another mount (or of its own, e.g. the Controller's digs_model_config_path)
        self.mounts = {m["mountPath"]: self.host_path(m["mountPath"]) for m in mounts}
        for m in mounts:
            v = volumes.get(m["name"], {})
            path = self.mounts[m["mountPath"]]
            if "configMap" in v or "secret" in v:
                src = v.get("configMap") or v.get("secret")
                obj = self.cluster.object("ConfigMap" if "configMap" in v else "Secret", self.namespace,
                                          src.get("name") or src.get("secretName"))
                data = dict((obj or {}).get("data", {}))
                if "secret" in v:
                    data = {k: base64.b64decode(x).decode() for k, x in data.items()}
                atomic_write(path, {k: self.rewrite_json(x) for k, x in data.items()}, src.get("defaultMode", 0o644))
            else:  # hostPath, emptyDir: a plain folder (hostPath content is not emulated)
                if v.get("hostPath", {}).get("type") != "File":
                    os.makedirs(path, exist_ok=True)
        if self.spec.get("serviceAccountName") and self.spec.get("automountServiceAccountToken", True):
            sa = self.host_path(SA_DIR)
            token = self.cluster.api.issue_token(self.namespace, self.spec["serviceAccountName"])
            atomic_write(sa, {"token": token, "ca.crt": open(self.cluster.ca).read(), "namespace": self.namespace}, 0o644)
            self.mounts[SA_DIR] = sa

    def host_path(self, container_path):
        return os.path.join(self.root, container_path.lstrip("/"))

    def rewrite(self, value):
        """A value naming a path under a mount names the materialized path (there is no mount namespace)."""
        for mp, hp in sorted(self.mounts.items(), key=lambda x: -len(x[0])):
            if value == mp or value.startswith(mp.rstrip("/") + "/"):
                return hp + value[len(mp.rstrip("/")):]
        return value

    def rewrite_json(self, text):
        """A mounted JSON file's string values naming a mounted path name the materialized path (same reason as
        `rewrite`); any other file, and every other value, is written byte for byte."""
        try:
            doc = json.loads(text)
        except ValueError:
            return text

        def walk(o):
            if isinstance(o, dict):
                return {k: walk(x) for k, x in o.items()}
            if isinstance(o, list):
                return [walk(x) for x in o]
            return self.rewrite(o) if isinstance(o, str) else o

        out = walk(doc)
        return json.dumps(out, indent=2) if out != doc else text

    def env(self):
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": self.root, "HOSTNAME": self.name}
        fields = {"status.podIP": self.ip, "status.hostIP": self.cluster.node_ip, "metadata.name": self.name,
                  "metadata.namespace": self.namespace}
        for e in self.container.get("env", []):
            if "value" in e:
                env[e["name"]] = self.rewrite(expand(str(e["value"]), env))
            elif "fieldRef" in e.get("valueFrom", {}):
                path = e["valueFrom"]["fieldRef"]["fieldPath"]
                if path not in fields:
                    raise SystemExit(f"pod {self.name}: downward API field {path} is not emulated")
                env[e["name"]] = fields[path]
            else:
                raise SystemExit(f"pod {self.name}: env {e['name']} source {e.get('valueFrom')} is not emulated")
        if SA_DIR in self.mounts:
            env["KUBERNETES_SERVICE_HOST"] = self.cluster.api.host
            env["KUBERNETES_SERVICE_PORT"] = str(self.cluster.api.port)
            # the binary's default directory is absolute; it honours this override
            env["MINDIE_MS_SERVICEACCOUNT_DIR"] = self.mounts[SA_DIR]
        env.update(self.cluster.extra_env)
        return env

    def argv(self, env):
        cmd = [expand(c, env) for c in self.container.get("command", [])]
        args = [expand(a, env) for a in self.container.get("args", [])]
        if cmd and cmd[0] == SERVER_ENTRYPOINT:
            port = (self.container.get("ports") or [{"containerPort": 1025}])[0]["containerPort"]
            argv = [self.cluster.binary("mindie_sim"), "--ip", env.get("MIES_CONTAINER_IP", self.ip),
                    "--management-ip", env.get("MIES_CONTAINER_MANAGEMENT_IP", self.ip), "--port", str(port),
                    "--management-port", "1026", "--metrics-port", "1027", "--inter-comm-port", "1121",
                    "--infer-mode", "dmi", "--wire", "compat", "--speedup", str(self.cluster.speedup)]
            cfg = env.get("MIES_CONFIG_JSON_PATH")
            if cfg and os.path.exists(cfg) and json.load(open(cfg)):
                argv += ["--config-file", cfg]
            return argv
        if not cmd:
            raise SystemExit(f"pod {self.name}: no command (the image's entrypoint is not emulated)")
        exe = self.cluster.binary(cmd[0]) if "/" not in cmd[0] else cmd[0]
        return [exe] + cmd[1:] + args

    # ------------------------------------------------------------ lifecycle
    def start(self):
        env = self.env()
        argv = self.argv(env)
        with open(self.log_path, "ab") as out:
            out.write(f"--- start {time.strftime('%H:%M:%S')} restart={self.restarts}: {shlex.join(argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(argv, env=env, cwd=self.root, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.start_time = time.time()
        self.started = False
        self.ready = False

    def stop(self, sig=signal.SIGTERM, grace=None):
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, sig)
        except ProcessLookupError:
            return
        grace = self.spec.get("terminationGracePeriodSeconds", 30) if grace is None else grace
        try:
            p.wait(timeout=max(grace, 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()

    def restart(self, why):
        if self.gone or self.cluster.stopping.is_set():
            return
        log(f"pod {self.name}: restarting container ({why})")
        self.stop(signal.SIGKILL)
        self.restarts += 1
        time.sleep(min(10, 0.5 * 2 ** min(self.restarts, 5)))
        if not self.gone:
            self.start()

    def as_api_object(self):
        status = {"phase": "Running" if self.proc and self.proc.poll() is None else "Pending",
                  "podIP": self.ip, "podIPs": [{"ip": self.ip}], "hostIP": self.cluster.node_ip,
                  "conditions": [{"type": "Ready", "status": "True" if self.ready else "False"}],
                  "containerStatuses": [{"name": self.container["name"], "ready": self.ready,
                                         "restartCount": self.restarts}]}
        meta = {"name": self.name, "namespace": self.namespace, "labels": self.labels,
                "annotations": self.annotations, "uid": hashlib.sha1(self.name.encode()).hexdigest()}
        if self.terminating:
            meta["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": self.spec, "status": status}


def atomic_write(path, data, mode):
    """kubelet's AtomicWriter layout: files in a timestamped folder, `..data` pointing at it, one link per key."""
    os.makedirs(path, exist_ok=True)
    ts = time.strftime("..%Y_%m_%d_%H_%M_%S.") + str(random.randint(100000000, 999999999))
    d = os.path.join(path, ts)
    os.makedirs(d)
    for k, v in data.items():
        f = os.path.join(d, k)
        with open(f, "w") as out:
            out.write(v)
        os.chmod(f, mode)
    tmp = os.path.join(path, "..data_tmp")
    os.symlink(ts, tmp)
    os.rename(tmp, os.path.join(path, "..data"))
    for k in data:
        link = os.path.join(path, k)
        if not os.path.islink(link):
            os.symlink(os.path.join("..data", k), link)


class PodAPI:
    """The pod list the Controller needs, over HTTPS with ServiceAccount tokens and the manifests' own RBAC."""

    def __init__(self, cluster, host):
        self.cluster = cluster
        self.host = host
        self.tokens = {}  # token -> (namespace, service account)
        cluster_ref = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                code, body = cluster_ref.handle(self.path, self.headers.get("Authorization", ""))
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

        self.server = http.server.ThreadingHTTPServer((host, 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cluster.server_cert, cluster.server_key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def issue_token(self, ns, sa):
        t = base64.urlsafe_b64encode(os.urandom(24)).decode()
        self.tokens[t] = (ns, sa)
        return t

    @staticmethod
    def status(code, reason, msg):
        return code, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": msg,
                      "code": code}

    def allowed(self, ns, sa, verb, resource, target_ns):
        for rb in self.cluster.objects("RoleBinding", target_ns):
            if not any(s.get("kind") == "ServiceAccount" and s.get("name") == sa and s.get("namespace", target_ns) == ns
                       for s in rb.get("subjects", [])):
                continue
            role = self.cluster.object(rb["roleRef"]["kind"], target_ns, rb["roleRef"]["name"])
            for rule in (role or {}).get("rules", []):
                if "" in rule.get("apiGroups", []) and resource in rule.get("resources", []) and \
                        (verb in rule.get("verbs", []) or "*" in rule.get("verbs", [])):
                    return True
        return False

    def handle(self, target, auth):
        u = urllib.parse.urlsplit(target)
        who = self.tokens.get(auth[len("Bearer "):]) if auth.startswith("Bearer ") else None
        if who is None:
            return self.status(401, "Unauthorized", "Unauthorized")
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", u.path)
        if not m:
            return self.status(404, "NotFound", "the server could not find the requested resource")
        ns = m.group(1)
        if not self.allowed(who[0], who[1], "list", "pods", ns):
            return self.status(403, "Forbidden", f'pods is forbidden: User "system:serviceaccount:{who[0]}:{who[1]}" '
                                                 f'cannot list resource "pods" in API group "" in the namespace "{ns}"')
        sel = urllib.parse.parse_qs(u.query).get("labelSelector", [""])[0]
        items = [p.as_api_object() for p in self.cluster.live_pods()
                 if p.namespace == ns and label_selector_matches(sel, p.labels)]
        return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(int(time.time()))},
                     "items": items}


class ServiceProxy:
    """kube-proxy for one Service port: its own loopback IP, round robin over Ready endpoints."""

    def __init__(self, cluster, svc, ip):
        self.cluster, self.svc, self.ip = cluster, svc, ip
        self.port_spec = svc["spec"]["ports"][0]
        self.rr = itertools.count()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, self.port_spec["port"]))
        self.sock.listen(128)
        threading.Thread(target=self.accept, daemon=True).start()

    def endpoints(self):
        sel = self.svc["spec"].get("selector", {})
        ns = self.svc["metadata"].get("namespace", "default")
        return [p for p in self.cluster.live_pods() if p.namespace == ns and p.ready and not p.terminating
                and selector_matches(sel, p.labels)]

    def accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            eps = self.endpoints()
            if not eps:
                c.close()  # no endpoints: kube-proxy rejects the connection
                continue
            pod = eps[next(self.rr) % len(eps)]
            target = self.port_spec.get("targetPort", self.port_spec["port"])
            try:
                u = socket.create_connection((pod.ip, resolve_port(pod, target)), timeout=5)
                u.settimeout(None)
            except (OSError, SystemExit):  # refused, or a named targetPort this pod lacks (not an endpoint in k8s)
                c.close()
                continue
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()

    def close(self):
        self.sock.close()


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        for s in (b,):
            try:
                s.shutdown(socket.SHUT_WR)
            except OSError:
                pass


def run_probe(pod, probe, env):
    """True when the probe succeeds (exec exit 0, HTTP 200-399, TCP connect)."""
    timeout = probe.get("timeoutSeconds", 1)
    if "exec" in probe:
        cmd = probe["exec"]["command"]
        script = cmd[-1] if len(cmd) >= 3 and cmd[1] == "-c" else None
        m = re.search(r"http_client_ctl\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)", script or "")
        if m:  # the MindIE image's probe client: one GET on the management port
            host = expand_shell(m.group(1), env)
            return http_ok(f"http://{host}:{m.group(2)}{m.group(3)}", min(timeout, int(m.group(4))))
        try:
            return subprocess.run(cmd, env=env, cwd=pod.root, timeout=timeout, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL).returncode == 0
        except (subprocess.TimeoutExpired, OSError):
            return False
    if "httpGet" in probe:
        g = probe["httpGet"]
        port = resolve_port(pod, g["port"])
        scheme = g.get("scheme", "HTTP").lower()
        return http_ok(f"{scheme}://{g.get('host', pod.ip)}:{port}{g.get('path', '/')}", timeout)
    if "tcpSocket" in probe:
        try:
            socket.create_connection((pod.ip, resolve_port(pod, probe["tcpSocket"]["port"])), timeout=timeout).close()
            return True
        except OSError:
            return False
    return True


def expand_shell(word, env):
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env.get(m.group(1), ""), word)


def resolve_port(pod, port):
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in pod.container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    raise SystemExit(f"pod {pod.name}: named port {port} not found")


def http_ok(url, timeout):
    ctx = ssl._create_unverified_context() if url.startswith("https") else None
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=ctx) as r:
            return 200 <= r.status < 400
    except urllib.error.HTTPError as e:
        return 200 <= e.code < 400
    except Exception:
        return False


class KubeLocal:
    def __init__(self, manifests_text, net=60, binaries=None, workdir=None, speedup=1.0, extra_env=None):
        self.docs = [d for d in yaml.safe_load_all(manifests_text) if d]
        self.net = net
        self.node_ip = f"127.0.{net}.1"
        self.bin = binaries or os.environ.get("MINDIE_MS_BIN") or os.path.join(ROOT, "out", "bin")
        self.workdir = workdir or tempfile.mkdtemp(prefix="kube-local-")
        self.speedup = speedup
        self.extra_env = dict(extra_env or {})
        self.pods = []
        self.services = {}
        self.next_ip = 10
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        os.makedirs(os.path.join(self.workdir, "logs"), exist_ok=True)
        pki = os.path.join(self.workdir, "pki")
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen_test_pki.sh"), pki], check=True,
                       stdout=subprocess.DEVNULL)
        self.ca = os.path.join(pki, "ca.pem")
        self.server_cert, self.server_key = os.path.join(pki, "server.pem"), os.path.join(pki, "server.key.pem")
        for d in self.docs:
            if d["kind"] == "Namespace":
                continue
            ns = d["metadata"].get("namespace")
            if ns and not any(x["kind"] == "Namespace" and x["metadata"]["name"] == ns for x in self.docs) \
                    and ns != "default":
                raise SystemExit(f"{d['kind']}/{d['metadata']['name']}: namespace {ns} is not created by these "
                                 f"manifests (kubectl apply would fail: namespaces \"{ns}\" not found)")
        self.api = PodAPI(self, self.node_ip)

    # ------------------------------------------------------------ objects
    def objects(self, kind, ns=None):
        return [d for d in self.docs if d["kind"] == kind and (ns is None or d["metadata"].get("namespace") == ns)]

    def object(self, kind, ns, name):
        return next((d for d in self.objects(kind, ns) if d["metadata"]["name"] == name), None)

    def binary(self, name):
        p = os.path.join(self.bin, name)
        if not os.access(p, os.X_OK):
            raise SystemExit(f"{p}: no such binary (set MINDIE_MS_BIN or --bin)")
        return p

    def live_pods(self):
        with self.lock:
            return [p for p in self.pods if not p.gone]

    def pods_of(self, deployment):
        return [p for p in self.live_pods() if p.deployment["metadata"]["name"] == deployment and not p.terminating]

    def service_ip(self, name):
        return self.services[name].ip

    # ------------------------------------------------------------ running
    def new_pod(self, dep):
        with self.lock:
            ip = f"127.0.{self.net}.{self.next_ip}"
            self.next_ip += 1
            if self.next_ip > 254:
                raise SystemExit("out of pod addresses on this network")
            pod = Pod(self, dep, ip)
            self.pods.append(pod)
        pod.materialize()
        pod.start()
        threading.Thread(target=self.kubelet, args=(pod,), daemon=True).start()
        log(f"pod {pod.name} started on {ip}")
        return pod

    def start(self):
        for i, svc in enumerate(self.objects("Service")):
            self.services[svc["metadata"]["name"]] = ServiceProxy(self, svc, f"127.0.{self.net}.{2 + i}")
        for dep in self.objects("Deployment"):
            for _ in range(dep["spec"].get("replicas", 1)):
                self.new_pod(dep)
        threading.Thread(target=self.replicaset, daemon=True).start()
        return self

    def replicaset(self):
        """Keeps each Deployment at `replicas` pods: a deleted pod is replaced by a new one (new name, new IP)."""
        while not self.stopping.wait(0.5):
            for dep in self.objects("Deployment"):
                for _ in range(dep["spec"].get("replicas", 1) - len(self.pods_of(dep["metadata"]["name"]))):
                    if not self.stopping.is_set():
                        self.new_pod(dep)

    def kubelet(self, pod):
        """Probes and restarts of one pod's container."""
        c = pod.container
        startup, readiness, liveness = c.get("startupProbe"), c.get("readinessProbe"), c.get("livenessProbe")
        env = pod.env()
        fails = {"startup": 0, "readiness": 0, "liveness": 0}
        succ = {"readiness": 0}
        last = {"startup": 0.0, "readiness": 0.0, "liveness": 0.0}
        while not pod.gone and not self.stopping.is_set():
            time.sleep(0.2)
            if pod.terminating:
                continue
            if pod.proc.poll() is not None:
                pod.ready = False
                if pod.gone or self.stopping.is_set():
                    return
                pod.restart(f"exited with {pod.proc.returncode}")
                fails = dict.fromkeys(fails, 0)
                continue
            now = time.time()

            def due(name, probe):
                if now - pod.start_time < probe.get("initialDelaySeconds", 0):
                    return False
                if now - last[name] < probe.get("periodSeconds", 10):
                    return False
                last[name] = now
                return True

            if not pod.started:
                if startup is None:
                    pod.started = True
                elif due("startup", startup):
                    if run_probe(pod, startup, env):
                        pod.started = True
                    else:
                        fails["startup"] += 1
                        if fails["startup"] >= startup.get("failureThreshold", 3):
                            pod.restart("startup probe failed")
                            fails = dict.fromkeys(fails, 0)
                continue
            if liveness and due("liveness", liveness):
                if run_probe(pod, liveness, env):
                    fails["liveness"] = 0
                else:
                    fails["liveness"] += 1
                    if fails["liveness"] >= liveness.get("failureThreshold", 3):
                        pod.ready = False
                        pod.restart("liveness probe failed")
                        fails = dict.fromkeys(fails, 0)
                        continue
            if readiness is None:
                pod.ready = True
            elif due("readiness", readiness):
                if run_probe(pod, readiness, env):
                    fails["readiness"] = 0
                    succ["readiness"] += 1
                    if succ["readiness"] >= readiness.get("successThreshold", 1):
                        pod.ready = True
                else:
                    succ["readiness"] = 0
                    fails["readiness"] += 1
                    if fails["readiness"] >= readiness.get("failureThreshold", 3):
                        pod.ready = False

    def kill_pod(self, name):
        """The pod's node dies: SIGKILL, the pod object goes; the ReplicaSet creates a replacement."""
        pod = next(p for p in self.live_pods() if p.name == name)
        pod.gone = True
        pod.stop(signal.SIGKILL)
        log(f"pod {name} killed")

    def delete_pod(self, name):
        """`kubectl delete pod`: terminating (out of endpoints and discovery), SIGTERM, grace, then gone."""
        pod = next(p for p in self.live_pods() if p.name == name)
        pod.terminating = True
        pod.ready = False
        pod.stop(signal.SIGTERM)
        pod.gone = True
        log(f"pod {name} deleted")

    def stop(self):
        self.stopping.set()
        for s in self.services.values():
            s.close()
        for p in self.live_pods():
            p.gone = True
            p.stop(signal.SIGTERM, grace=5)
        self.api.server.shutdown()

    def describe(self):
        out = []
        for p in self.live_pods():
            out.append({"name": p.name, "ip": p.ip, "ready": p.ready, "started": p.started, "restarts": p.restarts,
                        "running": p.proc is not None and p.proc.poll() is None})
        return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifests", help="YAML from msctl render ('-' = stdin)")
    ap.add_argument("--net", type=int, default=60, help="loopback network 127.0.N.0/24 (default 60)")
    ap.add_argument("--bin", help="folder of mindie_sim, ms_coordinator, ms_controller (default $MINDIE_MS_BIN)")
    ap.add_argument("--workdir", help="where pod folders and logs go (default a new temp folder)")
    ap.add_argument("--speedup", type=float, default=1.0, help="mindie_sim speed-up (default 1)")
    a = ap.parse_args()
    text = sys.stdin.read() if a.manifests == "-" else open(a.manifests).read()
    k = KubeLocal(text, net=a.net, binaries=a.bin, workdir=a.workdir, speedup=a.speedup).start()
    for name, s in k.services.items():
        log(f"service {name}: {s.ip}:{s.port_spec['port']}")
    log(f"work folder {k.workdir}; Ctrl-C stops")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(5):
        log(json.dumps(k.describe()))
    k.stop()


if __name__ == "__main__":
    main()
