"""deploy/grafana and deploy/prometheus (issue 16): every metric the dashboard queries exists in the real /metrics
of the job it names (Coordinator, instance, Controller), the Controller's /metrics passes `promtool check metrics`,
and promtool accepts the scrape configs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys

import pytest
import requests

from conftest import REPO, bin_dir
from e2e_util import MODEL, TIMEOUT

sys.path.insert(0, str(REPO / "scripts"))
import local_cluster  # noqa: E402

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
JOBS = {"mindie-coordinator", "mindie-instances", "mindie-controller"}


def dashboard_metrics(jobs=JOBS) -> set[str]:
    """Names of the series the dashboard selects with job="<one of jobs>"."""
    dash = json.loads((REPO / "deploy" / "grafana" / "mindie-ms.json").read_text())
    names = set()
    for panel in dash["panels"]:
        for target in panel.get("targets", []):  # a row has none
            # a series selector is a name followed by its label matchers; every one names its job
            for name, job in re.findall(r'([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{[^}]*job="([^"]+)"', target["expr"]):
                assert job in JOBS, f"unknown job {job} in {target['expr']}"
                if name not in PROMQL_WORDS and job in jobs:
                    names.add(name)
            unjobbed = [n for n in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", target["expr"])
                        if n not in PROMQL_WORDS and not re.search(re.escape(n) + r'\s*\{[^}]*job="', target["expr"])]
            assert not unjobbed, f"series without a job matcher in {target['expr']}: {unjobbed}"
    return names


def exposed(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}


@pytest.fixture(scope="module")
def pd_cluster(tmp_path_factory):
    """A 1P1D cluster with its Controller, on a free loopback network."""
    c = local_cluster.LocalCluster(mode="pd", p=1, d=1, speedup=20, binaries=str(bin_dir()),
                                   workdir=str(tmp_path_factory.mktemp("dash") / "cluster"))
    try:
        c.start(timeout=90)
        yield c
    finally:
        c.stop()


def controller_metrics(c) -> str:
    r = requests.get(f"http://{c.host}:{c.controller_port}/metrics", timeout=TIMEOUT)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4"), r.text
    return r.text


def test_controller_metrics_pass_promtool_and_tell_the_cluster(pd_cluster):
    text = controller_metrics(pd_cluster)
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (one_key_build.sh does)"
    p = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert p.returncode == 0 and not (p.stdout + p.stderr).strip(), (p.stdout + p.stderr).decode()
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")]
    assert len(families) == 11 and all(f.startswith("mindie_controller_") for f in families), families
    for name in families:
        assert f"# HELP {name} " in text, name
    def value(series):
        m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else None
    assert value("mindie_controller_leader") == 1
    assert value('mindie_controller_instances{role="prefill",state="published"}') == 1
    assert value('mindie_controller_instances{role="decode",state="published"}') == 1
    assert value('mindie_controller_role_posts_total{result="ok"}') >= 2
    assert value('mindie_controller_refresh_pushes_total{result="ok"}') >= 1
    assert value('mindie_controller_role_decisions_total{kind="initial"}') == 1
    assert value('mindie_controller_discovery_passes_total{source="rank_table",result="ok"}') >= 1


def test_dashboard_controller_metrics_exist(pd_cluster):
    wanted = dashboard_metrics({"mindie-controller"})
    assert len(wanted) >= 8
    missing = wanted - exposed(controller_metrics(pd_cluster))
    assert missing == set(), f"dashboard metrics missing from the Controller's /metrics: {sorted(missing)}"


def test_sigterm_stops_the_controller_cleanly(tmp_path):
    """The Controller's async entry point still stops on SIGTERM (an async main would park the main thread in
    libdispatch's sigsuspend with SIGTERM unblocked, and the signal would kill it): exit 0, its last words logged,
    the cluster status file written a last time."""
    c = local_cluster.LocalCluster(mode="pd", p=1, d=1, speedup=20, binaries=str(bin_dir()),
                                   workdir=str(tmp_path / "cluster"))
    try:
        c.start(timeout=90)
        status = os.path.join(c.logs, "cluster_status_output.json")
        os.utime(status, (0, 0))
        p = c.procs["ms_controller"]
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == 0
    finally:
        c.stop()
    log = open(os.path.join(c.logs, "ms_controller.log"), errors="replace").read()
    assert "signal=15" in log and "stopping" in log and log.rstrip().endswith("stopped"), log[-2000:]
    assert os.path.getmtime(status) > 0


def test_dashboard_metrics_exist(coordinator):
    # some traffic first, so histograms have buckets
    r = requests.post(coordinator.url + "/v1/chat/completions", timeout=TIMEOUT,
                      json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200
    text = requests.get(coordinator.external_url + "/metrics", timeout=TIMEOUT).text
    inst = coordinator.backends.instances[0]
    text += requests.get(f"http://{inst.host}:{inst.metrics_port}/metrics", timeout=TIMEOUT).text
    wanted = dashboard_metrics({"mindie-coordinator", "mindie-instances"})
    assert len(wanted) >= 10
    missing = wanted - exposed(text)
    assert missing == set(), f"dashboard metrics missing from /metrics: {sorted(missing)}"


def test_promtool_accepts_scrape_config():
    promtool = shutil.which("promtool")
    assert promtool, "promtool not found: install Debian's prometheus package (one_key_build.sh does)"
    p = subprocess.run([promtool, "check", "config", str(REPO / "deploy" / "prometheus" / "scrape.yml")],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stdout.decode() + p.stderr.decode()
    # Debian's promtool lacks Kubernetes service discovery: that must be the only thing it refuses in the pod job
    p = subprocess.run([promtool, "check", "config", str(REPO / "deploy" / "prometheus" / "scrape-kubernetes.yml")],
                       capture_output=True, timeout=60)
    out = p.stdout.decode() + p.stderr.decode()
    if p.returncode != 0:
        errors = [l for l in out.splitlines() if re.match(r"\s*line \d+:", l)]
        assert errors and all("field kubernetes_sd_configs not found" in l for l in errors), out
