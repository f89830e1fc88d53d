"""Every manifest `msctl render` produces for the sample specs in conf/ passes the real Kubernetes schemas
(kubernetes-validate, strict: unknown fields are errors)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

SPECS = ["infer_server.json", "infer_server_cross_node.json", "infer_server_pd_cluster.json"]


def msctl() -> str:
    return os.path.join(os.environ.get("MINDIE_MS_BIN") or str(REPO / "out" / "bin"), "msctl")


@pytest.mark.parametrize("spec", SPECS)
def test_rendered_manifests_pass_kubernetes_validate_strict(spec, tmp_path):
    path = tmp_path / spec
    path.write_bytes((REPO / "conf" / spec).read_bytes())
    os.chmod(path, 0o640)
    r = subprocess.run([msctl(), "render", "infer_server", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "kind: Deployment" in r.stdout
    v = subprocess.run([sys.executable, str(REPO / "scripts" / "validate_manifests.py"), "--k8s-version", "1.30", "-"],
                       input=r.stdout, capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr
    passed, failed = (int(w) for w in v.stdout.split()[-4::2])
    assert failed == 0 and passed >= 2, v.stdout  # at least a Deployment and a Service


HA_CASES = {
    "address": ({"etcd_address": "etcd.mindie.svc.cluster.local:2379"}, []),
    "members": ({"etcd_address": "etcd-0.etcd:2379,etcd-1.etcd:2379,etcd-2.etcd:2379"}, []),
    "etcd1": ({"etcd": {"replicas": 1}}, ["kind: StatefulSet", "clusterIP: None"]),
    "etcd3": ({"etcd": {"replicas": 3, "storage": "4Gi", "image": "registry.k8s.io/etcd:3.5.16-0"}},
              ["kind: StatefulSet", "clusterIP: None", "name: mindie-pd-etcd\n"]),
}


@pytest.mark.parametrize("case", sorted(HA_CASES))
@pytest.mark.parametrize("k8s", ["1.28", "1.33"])
def test_rendered_pd_cluster_with_ha_passes_kubernetes_validate_strict(case, k8s, tmp_path):
    """pd_cluster.ha adds replicas, a percentage maxUnavailable, POD_NAMESPACE and the cluster name, and with
    `etcd` a StatefulSet, its headless Service and a budget: still what the API server takes."""
    import json
    spec = json.loads((REPO / "conf" / "infer_server_pd_cluster.json").read_text())
    ha, expected = HA_CASES[case]
    spec["pd_cluster"]["ha"] = ha
    path = tmp_path / "pd_ha.json"
    path.write_text(json.dumps(spec))
    os.chmod(path, 0o640)
    r = subprocess.run([msctl(), "render", "infer_server", "-f", str(path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert 'maxUnavailable: "100%"' in r.stdout and "function_sw" in r.stdout and "MINDIE_MS_CLUSTER_NAME" in r.stdout
    for text in expected:
        assert text in r.stdout, text
    v = subprocess.run([sys.executable, str(REPO / "scripts" / "validate_manifests.py"), "--k8s-version", k8s, "-"],
                       input=r.stdout, capture_output=True, text=True, timeout=120)
    assert v.returncode == 0, v.stdout + v.stderr
    passed, failed = (int(w) for w in v.stdout.split()[-4::2])
    assert failed == 0 and passed >= 4, v.stdout
