"""One exit-status convention for the five binaries (docs/decisions.md): 0 for --help and --version, 2 for a usage
or configuration error, 1 for a failure at run time. Each case asserts the status and that the message names what
was wrong, as a script or kubelet would see it."""

from __future__ import annotations

import json
import os
import socket
import subprocess

import pytest

from conftest import bin_dir

BINARIES = ["ms_coordinator", "ms_controller", "ms_deployer", "mindie_sim", "msctl"]


def run(argv: list[str], timeout: float = 30, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_dir() / argv[0]), *argv[1:]], capture_output=True, text=True, timeout=timeout,
                          env=None if env is None else {**os.environ, **env})


def write_config(path, doc) -> str:
    path.write_text(json.dumps(doc))
    path.chmod(0o640)  # the config-file check refuses group- or world-writable files
    return str(path)


@pytest.mark.parametrize("exe", BINARIES)
def test_help_and_version_exit_0(exe):
    assert run([exe, "--version"]).returncode == 0
    assert run([exe, "--help"]).returncode == 0


@pytest.mark.parametrize("exe", BINARIES)
def test_an_unknown_flag_is_a_usage_error(exe):
    r = run([exe, "--no-such-flag"])
    assert r.returncode == 2, r
    assert "--no-such-flag" in r.stderr, r.stderr


@pytest.mark.parametrize("argv", [
    ["ms_coordinator", "--config", "/nonexistent/ms_coordinator.json"],
    ["ms_controller", "--config", "/nonexistent/ms_controller.json"],
    ["ms_deployer", "--config", "/nonexistent/ms_deployer.json"],
    ["mindie_sim", "--config-file", "/nonexistent/config.json"],
    ["msctl", "render", "infer_server", "-f", "/nonexistent/infer_server.json"],
], ids=lambda a: a[0])
def test_a_missing_config_file_is_a_config_error(argv):
    r = run(argv)
    assert r.returncode == 2, r
    assert "/nonexistent/" in r.stderr, r.stderr


def test_a_bad_option_value_is_a_usage_error():
    r = run(["mindie_sim", "--instances", "0"])
    assert r.returncode == 2, r
    assert "--instances" in r.stderr, r.stderr


def test_a_taken_port_is_a_runtime_failure():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run(["mindie_sim", "--ip", "127.0.0.1", "--port", str(port), "--management-ip", "127.0.0.1",
                 "--management-port", "0",
                 "--metrics-port", "0", "--inter-comm-port", "0", "--control-port", "0"])
    assert r.returncode == 1, r
    assert "cannot listen" in r.stderr, r.stderr


DEPLOYER_OK = {"ip": "127.0.0.1", "port": 9789, "k8s_apiserver_ip": "127.0.0.1", "ms_status_file": "/tmp/s.json",
               "server_tls_enable": False, "client_k8s_tls_enable": False, "client_mindie_server_tls_enable": False}


@pytest.mark.parametrize("patch,line", [
    ({"port": "sss"}, 'port = "sss": allowed integer 1024...65535'),
    ({"rank_table_sync_seconds": 0}, "rank_table_sync_seconds = 0: allowed integer 1...3600"),
    ({"k8s_apiserver_ip": "127.a.0.1"},
     'k8s_apiserver_ip = "127.a.0.1": allowed an IPv4 or IPv6 address other than 0.0.0.0 and ::'),
    ({"ms_status_file": None}, "ms_status_file = <missing>: allowed a non-empty file path"),
], ids=["wrong-type", "out-of-range", "bad-ip", "missing"])
def test_a_bad_deployer_config_value_is_a_config_error(tmp_path, patch, line):
    doc = {k: v for k, v in {**DEPLOYER_OK, **patch}.items() if v is not None}
    path = write_config(tmp_path / "ms_deployer.json", doc)
    r = run(["ms_deployer", "--config", path])
    assert r.returncode == 2, r
    assert r.stderr == f"ms_deployer: {path}: {line}\n", r.stderr


def test_a_bad_msctl_config_value_is_a_config_error(tmp_path):
    (tmp_path / ".mindie_ms").mkdir()
    path = write_config(tmp_path / ".mindie_ms" / "msctl.json",
                        {"http": {"dstIP": "127.0.0.1", "dstPort": 80, "timeout": 5, "tls_enable": False}})
    r = run(["msctl", "get", "infer_server", "-n", "a"], env={"HOME": str(tmp_path)})
    assert r.returncode == 2, r
    assert r.stderr == f"msctl: {path}: http.dstPort = 80: allowed integer 1024...65535\n", r.stderr
