"""deploy/prometheus/scrape-kubernetes.yml against the Deployer's own PD manifests (the golden file): Prometheus's
relabelling, replayed on each pod template as Kubernetes service discovery would present it, must keep the
Coordinator and the Controller, scrape their /metrics ports and put them in the jobs the dashboard queries."""

from __future__ import annotations

import json
import re

import yaml

from conftest import REPO


def sanitize(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def relabel(labels: dict[str, str], rules: list[dict]) -> dict[str, str] | None:
    """Prometheus's `replace` and `keep` actions (the only ones the pod job uses); None: the target is dropped."""
    for r in rules:
        value = r.get("separator", ";").join(labels.get(s, "") for s in r.get("source_labels", []))
        m = re.fullmatch(r.get("regex", "(.*)"), value)
        action = r.get("action", "replace")
        if action == "keep":
            if not m:
                return None
        elif action == "replace":
            if m:
                labels[r["target_label"]] = m.expand(re.sub(r"\$(\d+)", r"\\g<\1>", r.get("replacement", "$1")))
        else:
            raise AssertionError(f"relabel action {action} not replayed here")
    return labels


def targets() -> dict[str, dict[str, str]]:
    conf = yaml.safe_load((REPO / "deploy" / "prometheus" / "scrape-kubernetes.yml").read_text())
    job = next(j for j in conf["scrape_configs"] if j["job_name"] == "mindie-kubernetes-pods")
    objects = json.loads((REPO / "Tests" / "DeployerTests" / "Golden" / "pd_cluster.json").read_text())
    found = {}
    for o in objects:
        if o["kind"] != "Deployment":
            continue
        meta = o["spec"]["template"]["metadata"]
        labels = {"job": job["job_name"], "__metrics_path__": "/metrics",
                  "__meta_kubernetes_namespace": o["metadata"].get("namespace", "default"),
                  "__meta_kubernetes_pod_name": o["metadata"]["name"] + "-0"}
        labels |= {f"__meta_kubernetes_pod_label_{sanitize(k)}": v for k, v in meta.get("labels", {}).items()}
        labels |= {f"__meta_kubernetes_pod_annotation_{sanitize(k)}": v for k, v in meta.get("annotations", {}).items()}
        # role=pod discovery: one target per declared container port, the pod IP and that port
        for c in o["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports", []):
                t = relabel(dict(labels, __address__=f"10.1.2.3:{p['containerPort']}"), job["relabel_configs"])
                if t is not None:
                    found.setdefault(o["metadata"]["name"], t)
    return found


def test_coordinator_and_controller_pods_are_scraped_into_their_jobs():
    found = targets()
    coordinator = found.get("pd-coordinator")
    controller = found.get("pd-controller")
    assert coordinator and controller, sorted(found)
    assert coordinator["job"] == "mindie-coordinator" and coordinator["__address__"] == "10.1.2.3:1028", coordinator
    assert coordinator["__metrics_path__"] == "/metrics"
    # the Controller's /metrics is on its REST port (the named port "http")
    assert controller["job"] == "mindie-controller" and controller["__address__"] == "10.1.2.3:1026", controller
    assert controller["__metrics_path__"] == "/metrics"
