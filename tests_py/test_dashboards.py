"""deploy/grafana and deploy/prometheus (issue 16): every metric the dashboard queries exists in the real /metrics
of the Coordinator and of an instance, and promtool accepts the scrape config."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import requests

from conftest import REPO
from e2e_util import MODEL, TIMEOUT

PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}


def dashboard_metrics() -> set[str]:
    dash = json.loads((REPO / "deploy" / "grafana" / "mindie-ms.json").read_text())
    names = set()
    for panel in dash["panels"]:
        for target in panel["targets"]:
            # a series selector is a name followed by its label matchers or a range
            for name in re.findall(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*[{\[]", target["expr"]):
                if name not in PROMQL_WORDS:
                    names.add(name)
    return names


def test_dashboard_metrics_exist(coordinator):
    # some traffic first, so histograms have buckets
    r = requests.post(coordinator.url + "/v1/chat/completions", timeout=TIMEOUT,
                      json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    assert r.status_code == 200
    text = requests.get(coordinator.external_url + "/metrics", timeout=TIMEOUT).text
    inst = coordinator.backends.instances[0]
    text += requests.get(f"http://{inst.host}:{inst.metrics_port}/metrics", timeout=TIMEOUT).text
    exposed = {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}
    wanted = dashboard_metrics()
    assert len(wanted) >= 10
    assert wanted - exposed == set(), f"dashboard metrics missing from /metrics: {sorted(wanted - exposed)}"


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
