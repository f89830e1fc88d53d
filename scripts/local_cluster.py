#!/usr/bin/env python3
"""A MindIE-MS cluster on this machine: simulated MindIE Servers (mindie_sim), ms_controller and ms_coordinator,
wired through a generated global rank table exactly as on a real cluster.

    python3 scripts/local_cluster.py                 # 2P2D, pd_separate, the Controller decides roles
    python3 scripts/local_cluster.py --mode single --instances 3 --policy prefix_affinity
    python3 scripts/local_cluster.py --tls            # the data port speaks mutual TLS (a test PKI is generated)
    python3 scripts/local_cluster.py --ha             # a real etcd, 2 Controllers (active/standby) and
                                                      # 2 Coordinators (master/standby in pd mode, both active in single)

Each cluster lives on its own loopback network 127.0.N.0/24 with the reference's ports: the Coordinator and the
Controller on 127.0.N.1, instance k on 127.0.N.<2 + k>. By default N is the first network no other launcher holds
and whose ports are free, so several clusters run side by side; --net, --base-port and --first-ip pin the
addresses instead. Configs, logs and the test PKI go to $XDG_STATE_HOME/mindie-ms/clusters/ (default
~/.local/state/...), never into the source tree.

Ctrl-C (SIGINT) or SIGTERM stops every process of the cluster and frees every port. The same class is used by
the end-to-end tests (tests_py/), which kill and restart components for the failure drills.
"""
import argparse
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Instances listen on their own loopback address (127.0.<net>.<first_ip + k>) with the reference's fixed ports, as
# MindIE Servers do on their own hosts; the Controller and Coordinator use 127.0.<net>.1.
SIM_PORTS = {"data": 1025, "management": 1026, "metrics": 1027, "inter_comm": 1121}
SIM_CONTROL_PORT = 1122
# networks 127.0.0-63.0/24 are tried, in order, when the addresses are not pinned
AUTO_NETS = range(64)


def state_dir():
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "mindie-ms", "clusters")


def lock_dir():
    # per user and independent of XDG_STATE_HOME, so that every launcher of this user sees the same locks
    d = os.path.join(tempfile.gettempdir(), f"mindie-ms-local-cluster-{os.getuid()}")
    os.makedirs(d, mode=0o700, exist_ok=True)
    return d


def log(msg):
    print(f"[local_cluster] {msg}", flush=True)


def port_free(host, port):
    s = socket.socket()
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((host, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def http_status(url, timeout=2, context=None):
    try:
        with urllib.request.urlopen(url, timeout=timeout, context=context) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:
        return None


class LocalCluster:
    def __init__(self, mode="pd", p=2, d=2, instances=2, policy=None, wire="compat", tls=False, base_port=None,
                 workdir=None, binaries=None, speedup=1.0, profile="8b", sync_seconds=1, first_ip=None, net=None,
                 ha=False, ha_ttl=20, ha_name=None, etcd=None):
        self.mode = mode
        # HA: etcd on 127.0.N.1, the second Coordinator on .250 and the second Controller on .251 (same ports: the
        # Controller reaches every Coordinator of rank-table group 0 at one port, as on real hosts)
        self.ha = ha
        self.ha_ttl = ha_ttl
        # ha_name: the cluster's name in etcd (MINDIE_MS_CLUSTER_NAME: its lock and state keys are prefixed with
        # /<name>); etcd: "host:port" of an etcd that already serves (several clusters may share it), else one is started
        self.ha_name = ha_name
        self.shared_etcd = etcd
        self.p, self.d = p, d
        self.count = p + d if mode == "pd" else instances
        self.policy = policy or ("round_robin" if mode == "single" else "load_balance")
        self.wire = wire
        self.tls = tls
        self.speedup = speedup
        self.profile = profile
        self.sync_seconds = sync_seconds
        self.bin = binaries or os.environ.get("MINDIE_MS_BIN") or os.path.join(ROOT, "out", "bin")
        # nothing pinned: reserve() picks a free network; any of the three pins the addresses (the others default)
        self.auto = base_port is None and first_ip is None and net is None
        self._place(net or 0, base_port or 1025, first_ip or 2)
        if self.first_ip + self.count - 1 > 254:
            raise SystemExit(f"{self.count} instances from 127.0.{self.net}.{self.first_ip} do not fit in one network; "
                             "pass a smaller --first-ip")
        self._workdir = workdir
        self.workdir = workdir
        self._lock = None
        self._reserved = False
        self.procs = {}  # name -> Popen

    def _place(self, net, base_port, first_ip):
        self.net, self.base_port, self.first_ip = net, base_port, first_ip
        self.host = f"127.0.{net}.1"
        off = base_port - 1025
        self.coord_ports = {"predict": 1025 + off, "manage": 1026 + off, "external": 1028 + off, "status": 1029 + off}
        self.controller_port = 1030 + off
        self.controller_alarm_port = 1027 + off
        self.coordinator_hosts = [self.host] + ([f"127.0.{net}.250"] if getattr(self, "ha", False) else [])
        self.controller_hosts = [self.host] + ([f"127.0.{net}.251"] if getattr(self, "ha", False) else [])
        self.etcd_port, self.etcd_peer_port = 2379 + off, 2380 + off
        self.etcd_host = self.host
        if getattr(self, "shared_etcd", None):
            h, _, p = self.shared_etcd.rpartition(":")
            self.etcd_host, self.etcd_port = h, int(p)

    def _set_workdir(self):
        self.workdir = self._workdir or os.path.join(
            state_dir(), time.strftime("cluster-%Y%m%d-%H%M%S") + f"-net{self.net}-{os.getpid()}")
        self.logs = os.path.join(self.workdir, "logs")
        self.conf = os.path.join(self.workdir, "conf")

    def _busy(self):
        """(host, port, what) of the first address of this cluster that is in use, else None."""
        for host, port, what in self.addresses():
            if not port_free(host, port):
                return host, port, what
        return None

    def reserve(self):
        """Chooses the cluster's addresses (a free network unless pinned) and its work folder; idempotent.

        A network is held through a lock file for the launcher's life, so two launchers started at the same time
        never pick the same one; ports held by anything else are checked too."""
        if self._reserved:
            return
        if self.auto:
            for net in AUTO_NETS:
                f = open(os.path.join(lock_dir(), f"net-{net}.lock"), "a")
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    f.close()
                    continue
                self._place(net, 1025, 2)
                if self._busy() is None:
                    self._lock = f
                    break
                f.close()
            else:
                raise SystemExit(f"no free loopback network among 127.0.{AUTO_NETS[0]}-{AUTO_NETS[-1]}.0/24 "
                                 "(each holds a cluster or a process on its ports); stop a cluster or pass --net N")
        else:
            busy = self._busy()
            if busy:
                host, port, what = busy
                if what == "instance":
                    hint = "pass another --first-ip or --net"
                else:
                    hint = "pass another --base-port or --net"
                raise SystemExit(f"port {host}:{port} ({what}) is in use; stop what holds it, {hint}, "
                                 "or leave --net, --base-port and --first-ip out to pick a free network")
        self._set_workdir()
        self._reserved = True

    # ------------------------------------------------------------------ configuration
    def instance_ip(self, k):
        return f"127.0.{self.net}.{self.first_ip + k}"

    def write_configs(self):
        os.makedirs(self.logs, exist_ok=True)
        os.makedirs(self.conf, exist_ok=True)
        # the rank table: group 0 the Coordinator, 1 the Controller, 2 the servers
        servers = [{"server_id": self.instance_ip(k), "server_ip": self.instance_ip(k), "hardware_type": "800I A2(64G)",
                    "device": [{"device_id": "0", "device_ip": self.instance_ip(k), "device_logical_id": "0", "rank_id": str(k)}]}
                   for k in range(self.count)]
        table = {"version": "1.0", "status": "completed", "server_group_list": [
            {"group_id": "0", "server_count": str(len(self.coordinator_hosts)), "server_list": [
                {"server_id": f"coordinator{i}", "server_ip": h} for i, h in enumerate(self.coordinator_hosts)]},
            {"group_id": "1", "server_count": str(len(self.controller_hosts)), "server_list": [
                {"server_id": f"controller{i}", "server_ip": h} for i, h in enumerate(self.controller_hosts)]},
            {"group_id": "2", "server_count": str(self.count), "server_list": servers}]}
        self.rank_table = self._write("global_rank_table.json", table)

        c = json.load(open(os.path.join(ROOT, "conf", "ms_coordinator.json")))
        cp = self.coord_ports
        c["http_config"].update(predict_ip=self.host, manage_ip=self.host, predict_port=str(cp["predict"]),
                                manage_port=str(cp["manage"]), external_port=str(cp["external"]),
                                status_port=str(cp["status"]), alarm_port=str(self.controller_alarm_port))
        s = c["digs_scheduler_config"]
        s["deploy_mode"] = "pd_separate" if self.mode == "pd" else "single_node"
        s["scheduler_type"] = "digs_scheduler" if self.policy == "load_balance" else "default_scheduler"
        s["algorithm_type"] = self.policy
        if self.tls:
            pki = self.make_pki()
            c["tls_config"]["request_server_tls_enable"] = True
            c["tls_config"]["request_server_tls_items"] = {
                "ca_cert": f"{pki}/ca.pem", "tls_cert": f"{pki}/server.pem", "tls_key": f"{pki}/server.key.pem",
                "tls_passwd": f"{pki}/key_pwd.txt", "tls_crl": f"{pki}/crl.pem"}
        if self.ha:
            c["backup_config"] = {"database_server_dns": self.etcd_host, "database_server_port": self.etcd_port,
                                  "function_enable": self.mode == "pd", "lease_ttl_seconds": self.ha_ttl}
        self.coordinator_conf = self._write("ms_coordinator.json", c)
        self.coordinator_confs = [self.coordinator_conf]
        for i, h in enumerate(self.coordinator_hosts[1:], start=2):
            c2 = json.loads(json.dumps(c))
            c2["http_config"].update(predict_ip=h, manage_ip=h)
            self.coordinator_confs.append(self._write(f"ms_coordinator{i}.json", c2))

        k = json.load(open(os.path.join(ROOT, "conf", "ms_controller.json")))
        k["deploy_mode"] = "pd_separate" if self.mode == "pd" else "single_node"
        k["global_rank_table_file_path"] = self.rank_table
        k["default_p_rate"], k["default_d_rate"] = (self.p, self.d) if self.mode == "pd" else (0, 0)
        k["cluster_synchronization_seconds"] = self.sync_seconds
        k["rank_table_detecting_seconds"] = max(1, self.sync_seconds)
        k["http_server"] = {"ip": self.host, "port": self.controller_port}
        k["controller_alarm_port"] = self.controller_alarm_port
        k["mindie_ms_coordinator_port"] = cp["manage"]
        k["mindie_ms_coordinator_external_port"] = cp["external"]
        k["mindie_server_port"] = SIM_PORTS["data"]
        k["mindie_server_control_port"] = SIM_PORTS["management"]
        k["mindie_server_metric_port"] = SIM_PORTS["metrics"]
        k["process_manager"]["file_path"] = os.path.join(self.logs, "controller_process_status.json")
        k["cluster_status"]["file_path"] = os.path.join(self.logs, "cluster_status_output.json")
        # The Controller reads these with the config-file checks (mode ≤0640): copies in the work folder, so the
        # checkout's files are neither read with their git mode (0644) nor chmodded.
        for key in ("scaling_rule_file_path", "digs_model_config_path", "digs_machine_config_path"):
            if isinstance(k.get(key), str) and k[key].startswith("./"):
                rel = os.path.normpath(k[key][2:])
                src = os.path.join(ROOT, rel)
                if os.path.isfile(src):
                    dst = os.path.join(self.workdir, rel)
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    shutil.copyfile(src, dst)
                    os.chmod(dst, 0o640)
                    k[key] = dst
                else:
                    k[key] = src
        if self.ha:
            k["controller_backup_cfg"] = {"function_sw": True, "database_server_dns": self.etcd_host,
                                          "database_server_port": self.etcd_port, "lease_ttl_seconds": self.ha_ttl}
        self.controller_conf = self._write("ms_controller.json", k)
        self.controller_confs = [self.controller_conf]
        for i, h in enumerate(self.controller_hosts[1:], start=2):
            k2 = json.loads(json.dumps(k))
            k2["http_server"]["ip"] = h
            k2["process_manager"]["file_path"] = os.path.join(self.logs, f"controller{i}_process_status.json")
            k2["cluster_status"]["file_path"] = os.path.join(self.logs, f"cluster{i}_status_output.json")
            self.controller_confs.append(self._write(f"ms_controller{i}.json", k2))

    def _write(self, name, obj):
        path = os.path.join(self.conf, name)
        with open(path, "w") as f:
            json.dump(obj, f, indent=2)
        os.chmod(path, 0o640)
        return path

    def make_pki(self):
        pki = os.path.join(self.workdir, "pki")
        if not os.path.exists(os.path.join(pki, "ca.pem")):
            subprocess.run(["bash", os.path.join(ROOT, "scripts", "gen_test_pki.sh"), pki], check=True,
                           stdout=subprocess.DEVNULL)
        self.pki = pki
        return pki

    # ------------------------------------------------------------------ processes
    def _spawn(self, name, args):
        out = open(os.path.join(self.logs, f"{name}.log"), "ab")
        env = dict(os.environ)
        env.setdefault("MINDIE_LOG_LEVEL", "info")
        env.pop("MINDIE_MS_CLUSTER_NAME", None)
        if self.ha_name and name.startswith("ms_"):
            env["MINDIE_MS_CLUSTER_NAME"] = self.ha_name
        self.procs[name] = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                            env=env, cwd=self.workdir, start_new_session=True)
        return self.procs[name]

    def start_instance(self, k):
        ip = self.instance_ip(k)
        args = [os.path.join(self.bin, "mindie_sim"), "--ip", ip, "--management-ip", ip,
                "--port", str(SIM_PORTS["data"]), "--management-port", str(SIM_PORTS["management"]),
                "--metrics-port", str(SIM_PORTS["metrics"]), "--inter-comm-port", str(SIM_PORTS["inter_comm"]),
                "--wire", self.wire, "--profile", self.profile, "--seed", str(k + 1)]
        if self.speedup != 1.0:
            args += ["--speedup", str(self.speedup)]
        if self.mode == "pd":
            args += ["--infer-mode", "dmi"]
        if self.ha:  # the HA drills read each simulator's role posts from its control listener
            args += ["--control-port", str(SIM_CONTROL_PORT)]
        return self._spawn(f"sim{k}", args)

    def start_coordinator(self, i=1):
        name = "ms_coordinator" if i == 1 else f"ms_coordinator{i}"
        return self._spawn(name, [os.path.join(self.bin, "ms_coordinator"), "--config", self.coordinator_confs[i - 1]])

    def start_controller(self, i=1):
        name = "ms_controller" if i == 1 else f"ms_controller{i}"
        return self._spawn(name, [os.path.join(self.bin, "ms_controller"), "--config", self.controller_confs[i - 1]])

    # ------------------------------------------------------------------ HA: etcd
    def start_etcd(self, timeout=30):
        data = os.path.join(self.workdir, "etcd")
        u = f"http://{self.host}"
        p = self._spawn("etcd", ["etcd", "--name", "local", "--data-dir", data,
                                 "--listen-client-urls", f"{u}:{self.etcd_port}", "--advertise-client-urls", f"{u}:{self.etcd_port}",
                                 "--listen-peer-urls", f"{u}:{self.etcd_peer_port}",
                                 "--initial-advertise-peer-urls", f"{u}:{self.etcd_peer_port}",
                                 "--initial-cluster", f"local={u}:{self.etcd_peer_port}"])
        deadline = time.time() + timeout
        while time.time() < deadline:
            if p.poll() is not None:
                raise SystemExit(f"etcd exited with status {p.returncode}; see {self.logs}/etcd.log")
            try:
                self.etcd_get("/probe")
                return p
            except Exception:
                time.sleep(0.1)
        raise SystemExit(f"etcd did not serve within {timeout} s; see {self.logs}/etcd.log")

    def etcd_get(self, key):
        """The value of an etcd key (through its v3 JSON gateway), or None."""
        import base64
        body = json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode()
        req = urllib.request.Request(f"http://{self.etcd_host}:{self.etcd_port}/v3/kv/range", data=body, method="POST")
        with urllib.request.urlopen(req, timeout=2) as r:
            kvs = json.load(r).get("kvs") or []
        return base64.b64decode(kvs[0]["value"]).decode() if kvs else None

    def leader(self):
        """Which Controller leads ('<ip>:<port>' from the lock), or None."""
        try:
            return self.etcd_get(self.key_prefix() + "/cluster/leader-lock")
        except Exception:
            return None

    def master(self):
        """Which Coordinator is master ('<manage ip>:<port>'), or None (single_node: every one is active)."""
        try:
            return self.etcd_get(self.key_prefix() + "/coordinator/leader-lock")
        except Exception:
            return None

    def key_prefix(self):
        """What the binaries prefix their etcd keys with (HAKeys: no POD_NAMESPACE here, the cluster name if any)."""
        return f"/{self.ha_name}" if self.ha_name else ""

    def stop_process(self, name, sig=signal.SIGTERM, timeout=15):
        p = self.procs.get(name)
        if p is None or p.poll() is not None:
            return
        p.send_signal(sig)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def kill_process(self, name):
        self.stop_process(name, signal.SIGKILL)

    def addresses(self):
        out = [(self.host, v, "Coordinator") for v in self.coord_ports.values()]
        out += [(self.host, self.controller_port, "Controller"), (self.host, self.controller_alarm_port, "Controller")]
        for h in self.coordinator_hosts[1:]:
            out += [(h, v, "Coordinator") for v in self.coord_ports.values()]
        for h in self.controller_hosts[1:]:
            out += [(h, self.controller_port, "Controller"), (h, self.controller_alarm_port, "Controller")]
        if self.ha and not self.shared_etcd:
            out += [(self.host, self.etcd_port, "etcd"), (self.host, self.etcd_peer_port, "etcd")]
        for k in range(self.count):
            out += [(self.instance_ip(k), v, "instance") for v in SIM_PORTS.values()]
        return out

    def ports(self):
        return [(h, p) for h, p, _ in self.addresses()]

    def start(self, timeout=90):
        self.reserve()
        self.write_configs()
        if self.ha and not self.shared_etcd:
            self.start_etcd()
        for k in range(self.count):
            self.start_instance(k)
        for i in range(1, len(self.coordinator_hosts) + 1):
            self.start_coordinator(i)
        for i in range(1, len(self.controller_hosts) + 1):
            self.start_controller(i)
        self.wait_ready(timeout)

    def status_url(self, path, host=None):
        return f"http://{host or self.host}:{self.coord_ports['status']}{path}"

    def ready_coordinators(self):
        """Hosts of the Coordinators that answer readiness 200 (in pd HA mode: the master only)."""
        return [h for h in self.coordinator_hosts if http_status(self.status_url("/v1/readiness", h)) == 200]

    def instances_in_coordinator(self, host=None):
        """Instance ids the Coordinator holds (from its management API)."""
        try:
            with urllib.request.urlopen(f"http://{host or self.host}:{self.coord_ports['manage']}/v1/coordinator_info", timeout=2) as r:
                return [e["id"] for e in json.load(r).get("schedule_info", [])]
        except Exception:
            return []

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise SystemExit(f"{name} exited with status {p.returncode}; see {self.logs}/{name}.log")
            ready = self.ready_coordinators()
            if ready and all(len(self.instances_in_coordinator(h)) >= self.count for h in self.coordinator_hosts):
                return
            time.sleep(0.2)
        raise SystemExit(f"the cluster was not ready within {timeout} s; logs in {self.logs}")

    def stop(self):
        for name in sorted(self.procs, key=lambda n: (not n.startswith("ms_controller"), not n.startswith("ms_coordinator"),
                                                      n == "etcd")):
            self.stop_process(name)
        if self._lock is not None:
            self._lock.close()  # releases the network for the next launcher
            self._lock = None

    # ------------------------------------------------------------------ what a user sees
    def banner(self):
        scheme = "https" if self.tls else "http"
        cp = self.coord_ports
        tlsargs = (f" --cacert {self.pki}/ca.pem --cert {self.pki}/client.pem --key {self.pki}/client.key.pem"
                   if self.tls else "")
        shape = f"{self.p}P{self.d}D ({'pd_separate'})" if self.mode == "pd" else f"{self.count} mixed instances (single_node)"
        lines = [
            "",
            f"MindIE-MS local cluster is ready: {shape}, scheduling {self.policy}, simulators in {self.wire} wire mode.",
            "",
            f"  Inference (OpenAI, TGI, vLLM, Triton, MindIE):  {scheme}://{self.host}:{cp['predict']}",
            "  Try a streamed chat:",
            f"    curl -sN{tlsargs} {scheme}://{self.host}:{cp['predict']}/v1/chat/completions \\",
            "      -H 'Content-Type: application/json' \\",
            "      -d '{\"model\":\"llama3-8b\",\"stream\":true,\"max_tokens\":16,"
            "\"messages\":[{\"role\":\"user\",\"content\":\"Hello!\"}]}'",
            f"  Status page: http://{self.host}:{cp['status']}/   (live view in a browser; JSON: /v1/cluster)",
            f"  Metrics:     http://{self.host}:{cp['external']}/metrics",
            f"  Health:      http://{self.host}:{cp['status']}/v1/health   (readiness: /v1/readiness)",
            f"  Management:  http://{self.host}:{cp['manage']}/v1/coordinator_info",
            f"  Controller:  http://{self.host}:{self.controller_port}/v1/readiness",
            f"  Servers:     {', '.join(self.instance_ip(k) + ':' + str(SIM_PORTS['data']) for k in range(self.count))}",
        ] + ([
            f"  HA:          etcd http://{self.etcd_host}:{self.etcd_port}{' keys under /' + self.ha_name if self.ha_name else ''}; Controllers {', '.join(self.controller_hosts)} "
            f"(leader: {self.leader()}); Coordinators {', '.join(self.coordinator_hosts)} "
            f"(master: {self.master() or 'all active (single_node)'}; ready: {', '.join(self.ready_coordinators())})",
        ] if self.ha else []) + [
            f"  Logs:        {self.logs}",
            f"  Configs:     {self.conf}",
            "",
            "Press Ctrl-C to stop the cluster.",
        ]
        print("\n".join(lines), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=["pd", "single"], default="pd", help="pd (P/D separation, default) or single (mixed)")
    ap.add_argument("--p", type=int, default=2, help="prefill instances in pd mode (default 2)")
    ap.add_argument("--d", type=int, default=2, help="decode instances in pd mode (default 2)")
    ap.add_argument("--instances", type=int, default=2, help="mixed instances in single mode (default 2)")
    ap.add_argument("--policy", help="round_robin, cache_affinity, least_load, prefix_affinity (single); "
                                     "load_balance or round_robin (pd)")
    ap.add_argument("--wire", choices=["compat", "mindie"], default="compat",
                    help="simulator wire mode: compat (standard clients, default) or mindie (byte-faithful)")
    ap.add_argument("--tls", action="store_true", help="mutual TLS on the inference port (test PKI generated)")
    ap.add_argument("--net", type=int, choices=range(0, 255), metavar="N",
                    help="the cluster's loopback network 127.0.N.0/24 (default: the first free one from 0)")
    ap.add_argument("--base-port", type=int, help="first Coordinator port (default 1025)")
    ap.add_argument("--speedup", type=float, default=1.0, help="simulated accelerator speed-up (default 1)")
    ap.add_argument("--first-ip", type=int,
                    help="instance k listens on 127.0.N.<first-ip + k> with the reference's ports (default 2)")
    ap.add_argument("--ha", action="store_true",
                    help="a real etcd with 2 Controllers (active/standby) and 2 Coordinators (master/standby)")
    ap.add_argument("--ha-ttl", type=int, default=20, help="etcd lease TTL in seconds with --ha (default 20)")
    ap.add_argument("--ha-name", help="with --ha: the cluster's name in etcd (its keys are prefixed with /NAME, so that "
                                      "several clusters can share one etcd; default: the reference's keys)")
    ap.add_argument("--etcd", metavar="HOST:PORT", help="with --ha: use this etcd (shared with other clusters) instead of "
                                                       "starting one")
    ap.add_argument("--workdir", help="where configs and logs go "
                                      "(default $XDG_STATE_HOME/mindie-ms/clusters/cluster-<time>-net<N>-<pid>)")
    args = ap.parse_args()

    for exe in ("mindie_sim", "ms_coordinator", "ms_controller"):
        path = os.path.join(os.environ.get("MINDIE_MS_BIN") or os.path.join(ROOT, "out", "bin"), exe)
        if not os.access(path, os.X_OK):
            raise SystemExit(f"{path} is missing: build first with 'bash one_key_build.sh'")

    cluster = LocalCluster(mode=args.mode, p=args.p, d=args.d, instances=args.instances, policy=args.policy,
                           wire=args.wire, tls=args.tls, base_port=args.base_port, workdir=args.workdir,
                           speedup=args.speedup, first_ip=args.first_ip, net=args.net, ha=args.ha, ha_ttl=args.ha_ttl,
                           ha_name=args.ha_name, etcd=args.etcd)
    stopping = {"flag": False}

    def on_signal(signum, frame):
        stopping["flag"] = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        cluster.reserve()
        log(f"starting on 127.0.{cluster.net}.0/24 in {cluster.workdir}")
        cluster.start()
        cluster.banner()
        while not stopping["flag"]:
            for name, p in list(cluster.procs.items()):
                if p.poll() is not None and not stopping["flag"]:
                    log(f"{name} exited with status {p.returncode} (see {cluster.logs}/{name}.log); the rest keeps running")
                    cluster.procs.pop(name)
            time.sleep(0.5)
    except SystemExit as e:
        if e.code not in (None, 0):
            print(f"[local_cluster] {e.code}", file=sys.stderr)
        cluster.stop()
        raise SystemExit(1 if e.code not in (None, 0) else 0)
    log("stopping")
    cluster.stop()
    busy = [f"{h}:{p}" for h, p in cluster.ports() if not port_free(h, p)]
    if busy:
        log(f"still in use after stop: {', '.join(busy)}")
        raise SystemExit(1)
    log("stopped; every port is free")


if __name__ == "__main__":
    main()
