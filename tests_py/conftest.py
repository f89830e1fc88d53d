"""Fixtures: real processes (mindie_sim, ms_coordinator) on 127.0.0.1 with free ports.

Every process is started in its own session (process group) and killed at teardown; readiness is polled
with a deadline. Binaries come from $MINDIE_MS_BIN, else out/bin, else .build-py/release.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import huggingface_hub
import pytest
import requests
import requests.adapters

from e2e_util import HOST, MODEL

REPO = Path(__file__).resolve().parent.parent
# engine times divided by this: 20 tokens of the 8b profile take ~6 ms
SPEEDUP = "50"
START_DEADLINE = 30.0

_live: list["Proc"] = []


# --------------------------------------------------------------------------- no hub, loopback only

class _LoopbackOnlyAdapter(requests.adapters.HTTPAdapter):
    """huggingface_hub's HTTP backend here: loopback URLs pass, anything else (a hub) is refused."""

    def send(self, request, *args, **kwargs):
        host = urllib.parse.urlsplit(request.url).hostname
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise requests.ConnectionError(f"refused non-loopback URL {request.url} (no hub access in these tests)")
        return super().send(request, *args, **kwargs)


def _loopback_session() -> requests.Session:
    s = requests.Session()
    s.mount("http://", _LoopbackOnlyAdapter())
    s.mount("https://", _LoopbackOnlyAdapter())
    return s


# HF_HUB_OFFLINE=1 (set by scripts/run_python_tests.sh) blocks the hub's own functions; its default backend would
# also refuse loopback URLs, so InferenceClient gets this one.
huggingface_hub.configure_http_backend(backend_factory=_loopback_session)


def bin_dir() -> Path:
    for cand in (os.environ.get("MINDIE_MS_BIN"), REPO / "out" / "bin", REPO / ".build-py" / "release"):
        if cand and (Path(cand) / "mindie_sim").is_file() and (Path(cand) / "ms_coordinator").is_file():
            return Path(cand)
    pytest.fail("no mindie_sim/ms_coordinator: set MINDIE_MS_BIN or build (scripts/run_python_tests.sh does)")


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held together while picked, so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def wait_until(pred: Callable[[], bool], what: str, deadline: float = START_DEADLINE, proc: Optional["Proc"] = None,
               interval: float = 0.05):
    """Polls pred until it holds; fails with `what` (and the process log) at the deadline or if proc died."""
    end = time.monotonic() + deadline
    last_exc = None
    while time.monotonic() < end:
        if proc is not None and proc.popen.poll() is not None:
            pytest.fail(f"{proc.name} exited ({proc.popen.returncode}) while waiting for {what}\n{proc.tail()}")
        try:
            if pred():
                return
        except (requests.RequestException, OSError) as e:  # not listening yet
            last_exc = e
        time.sleep(interval)
    pytest.fail(f"timed out after {deadline}s waiting for {what} (last error: {last_exc})"
                + (f"\n{proc.tail()}" if proc else ""))


class Proc:
    """A child process in its own process group; stdout lines are collected (and copied to the log)."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: Optional[dict] = None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab", buffering=0)
        self.log.write(("$ " + " ".join(argv) + "\n").encode())
        self.lines: list[str] = []
        self._cv = threading.Condition()
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
                                      start_new_session=True, env=env, cwd=str(log_path.parent))
        _live.append(self)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for raw in iter(self.popen.stdout.readline, b""):
            self.log.write(raw)
            with self._cv:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def json_lines(self, n: int, deadline: float = START_DEADLINE) -> list[dict]:
        """The first n stdout lines that parse as JSON objects (e.g. --print-ports)."""
        end = time.monotonic() + deadline
        with self._cv:
            while True:
                objs = []
                for line in self.lines:
                    try:
                        v = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(v, dict):
                        objs.append(v)
                if len(objs) >= n:
                    return objs[:n]
                if self.popen.poll() is not None:
                    pytest.fail(f"{self.name} exited ({self.popen.returncode}) before printing its ports\n{self.tail()}")
                left = end - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{self.name} printed no ports within {deadline}s\n{self.tail()}")
                self._cv.wait(min(left, 0.2))

    def tail(self, n: int = 40) -> str:
        try:
            text = self.log_path.read_text("utf-8", "replace")
        except OSError:
            return ""
        return f"--- {self.name} log ({self.log_path}) ---\n" + "\n".join(text.splitlines()[-n:])

    def stop(self, grace: float = 3.0):
        """SIGTERM to the group, SIGKILL after `grace` seconds; always reaps."""
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # the group may hold leftovers even when the leader is gone
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(5)
        except subprocess.TimeoutExpired:
            pass
        self._reader.join(2)
        if self.popen.stdout:
            self.popen.stdout.close()
        self.log.close()
        if self in _live:
            _live.remove(self)


def _sigterm(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config):
    # a terminated test run still reaches pytest_sessionfinish and stops its children
    signal.signal(signal.SIGTERM, _sigterm)


def pytest_sessionfinish(session, exitstatus):
    # last resort (e.g. an interrupted run): no child may outlive the session
    for p in list(_live):
        p.stop()


# --------------------------------------------------------------------------- simulator


@dataclass
class SimInstance:
    host: str
    port: int
    management_port: int
    metrics_port: int
    inter_comm_port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def mgmt_url(self) -> str:
        return f"http://{self.host}:{self.management_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}"


@dataclass
class SimProcess:
    proc: Proc
    wire: str
    instances: list[SimInstance] = field(default_factory=list)


def start_sim(tmp: Path, wire: str, instances: int = 1, extra: tuple = (), data_port: int = 0,
              management_port: int = 0) -> SimProcess:
    """mindie_sim on free ports (8b profile, sped up); per-request `X-Sim-Fault` / `X-Sim-Output-Tokens` honoured.
    Equal non-zero data and management ports share one listener."""
    argv = [str(bin_dir() / "mindie_sim"), "--instances", str(instances), "--ip", HOST, "--management-ip", HOST,
            "--port", str(data_port), "--management-port", str(management_port), "--metrics-port", "0",
            "--inter-comm-port", "0", "--print-ports", "--speedup", SPEEDUP, "--model-name", MODEL, "--wire", wire, "--header-faults", *extra]
    env = dict(os.environ)
    env.pop("MIES_SERVICE_MONITOR_MODE", None)
    p = Proc(f"mindie_sim[{wire}]", argv, tmp / f"mindie_sim-{wire}.log", env=env)
    sim = SimProcess(p, wire)
    for j in p.json_lines(instances):
        sim.instances.append(SimInstance(j["host"], j["port"], j["managementPort"], j["metricsPort"], j["interCommPort"]))
    for inst in sim.instances:
        wait_until(lambda: requests.get(inst.mgmt_url + "/v2/health/ready", timeout=2).status_code == 200,
                   f"{p.name} {inst.mgmt_url}/v2/health/ready", proc=p)
    return sim


@pytest.fixture(scope="session")
def sim_compat(tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("sim-compat"), "compat")
    yield sim
    sim.proc.stop()


@pytest.fixture(scope="session")
def sim_mindie(tmp_path_factory):
    sim = start_sim(tmp_path_factory.mktemp("sim-mindie"), "mindie")
    yield sim
    sim.proc.stop()


# --------------------------------------------------------------------------- coordinator


@dataclass
class CoordinatorCluster:
    proc: Proc
    backends: SimProcess
    predict_port: int
    manage_port: int
    status_port: int
    external_port: int
    config_path: Path
    # what the Coordinator said before any instance was registered
    before_refresh: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.predict_port}"

    @property
    def manage_url(self) -> str:
        return f"http://{HOST}:{self.manage_port}"

    @property
    def status_url(self) -> str:
        return f"http://{HOST}:{self.status_port}"

    @property
    def external_url(self) -> str:
        return f"http://{HOST}:{self.external_port}"


def coordinator_config(tmp: Path, ports: dict) -> Path:
    """conf/ms_coordinator.json with free ports, single_node / default_scheduler / round_robin, mode 0640."""
    conf = json.loads((REPO / "conf" / "ms_coordinator.json").read_text())
    h = conf["http_config"]
    h["predict_ip"] = HOST
    h["manage_ip"] = HOST
    for key in ("predict_port", "manage_port", "alarm_port", "external_port", "status_port"):
        h[key] = str(ports[key])
    h["server_thread_num"] = 2
    d = conf["digs_scheduler_config"]
    d["deploy_mode"] = "single_node"
    d["scheduler_type"] = "default_scheduler"
    d["algorithm_type"] = "round_robin"
    conf["log_info"]["to_file"] = False
    conf["log_info"]["run_log_path"] = str(tmp / "ms_coordinator_run_log.txt")
    conf["log_info"]["operation_log_path"] = str(tmp / "ms_coordinator_operation_log.txt")
    # every e2e Coordinator writes its access log, so each real client's requests exercise it
    conf["log_info"]["access_log"] = {"enable": True, "path": str(tmp / "access.log")}
    path = tmp / "ms_coordinator.json"
    path.write_text(json.dumps(conf, indent=4))
    os.chmod(path, 0o640)
    return path


def refresh_payload(backends: SimProcess) -> dict:
    """The Controller's POST /v1/instances/refresh body (docs/wire/coordinator.md §3.1), built from each instance's
    /v1/config and /v1/status like the Controller does; role 85 'U' (mixed)."""
    ids, instances = [], []
    for k, inst in enumerate(backends.instances):
        cfg = requests.get(inst.mgmt_url + "/v1/config", timeout=5).json()
        st = requests.get(inst.mgmt_url + "/v1/status", timeout=5).json()["resource"]
        ids.append(k)
        instances.append({
            "id": k, "ip": inst.host, "port": str(inst.port), "metric_port": str(inst.metrics_port),
            "inter_comm_port": str(inst.inter_comm_port), "model_name": cfg["modelName"],
            "static_info": {
                "group_id": 0, "max_seq_len": cfg["maxSeqLen"], "max_output_len": cfg["maxOutputLen"],
                "total_slots_num": st["availSlotsNum"], "total_block_num": st["totalNpuBlockNums"],
                "block_size": cfg["cacheBlockSize"], "label": 2, "role": 85, "p_percentage": 0, "virtual_id": 0,
            },
            "dynamic_info": {"avail_slots_num": st["availSlotsNum"], "avail_block_num": st["availBlockNum"],
                             "peers": [], "prefix_hash": []},
        })
    return {"ids": ids, "instances": instances}


@contextlib.contextmanager
def coordinator_cluster(tmp: Path):
    """Two compat simulators (one process) and ms_coordinator in front; the simulators registered with a
    refresh. Yields a CoordinatorCluster; every process is stopped on exit."""
    backends = start_sim(tmp, "compat", instances=2)
    procs = [backends.proc]
    try:
        names = ("predict_port", "manage_port", "alarm_port", "external_port", "status_port")
        ports = dict(zip(names, free_ports(len(names))))
        cfg = coordinator_config(tmp, ports)
        env = dict(os.environ)
        env.pop("MINDIE_MS_COORDINATOR_CONFIG_FILE_PATH", None)
        env.pop("MINDIE_CHECK_INPUTFILES_PERMISSION", None)  # the permission check stays on
        p = Proc("ms_coordinator", [str(bin_dir() / "ms_coordinator"), "--config", str(cfg)], tmp / "ms_coordinator.log",
                 env=env)
        procs.append(p)
        c = CoordinatorCluster(p, backends, ports["predict_port"], ports["manage_port"], ports["status_port"],
                               ports["external_port"], cfg)
        wait_until(lambda: requests.get(c.status_url + "/v1/startup", timeout=2).status_code == 200,
                   "coordinator /v1/startup", proc=p)

        def data_listening():
            with socket.create_connection((HOST, c.predict_port), timeout=2):
                return True

        wait_until(data_listening, "coordinator data port", proc=p)
        # before registration: not ready, inference refused
        c.before_refresh["readiness"] = requests.get(c.status_url + "/v1/readiness", timeout=5).status_code
        r = requests.post(c.url + "/v1/chat/completions", timeout=10,
                          json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2})
        c.before_refresh["chat"] = (r.status_code, r.text)
        # register the two simulators
        r = requests.post(c.manage_url + "/v1/instances/refresh", json=refresh_payload(backends), timeout=10)
        c.before_refresh["refresh_status"] = r.status_code
        wait_until(lambda: requests.get(c.status_url + "/v1/readiness", timeout=2).status_code == 200,
                   "coordinator /v1/readiness after refresh", proc=p)
        yield c
    finally:
        for pr in reversed(procs):
            pr.stop()


@pytest.fixture(scope="session")
def coordinator(tmp_path_factory):
    with coordinator_cluster(tmp_path_factory.mktemp("coordinator")) as c:
        yield c


# --------------------------------------------------------------------------- targets


@dataclass
class Target:
    """Where the data-plane requests go: a simulator directly or the Coordinator in front of two."""
    name: str
    url: str
    wire: str  # backend wire mode
    via_coordinator: bool
    # Triton health/ready probes: simulator management port, or the Coordinator's status port
    probe_url: str


def _target(name: str, request) -> Target:
    if name == "sim_compat":
        s = request.getfixturevalue("sim_compat")
        i = s.instances[0]
        return Target(name, i.url, "compat", False, i.mgmt_url)
    if name == "sim_mindie":
        s = request.getfixturevalue("sim_mindie")
        i = s.instances[0]
        return Target(name, i.url, "mindie", False, i.mgmt_url)
    c = request.getfixturevalue("coordinator")
    return Target(name, c.url, "compat", True, c.status_url)


@pytest.fixture(params=["sim_compat", "coordinator"])
def target(request) -> Target:
    """The compat simulator directly, and the Coordinator (round robin over two compat simulators)."""
    return _target(request.param, request)


@pytest.fixture(params=["sim_compat", "sim_mindie", "coordinator"])
def any_target(request) -> Target:
    """As `target`, plus the simulator in its default byte-faithful `mindie` wire mode."""
    return _target(request.param, request)
