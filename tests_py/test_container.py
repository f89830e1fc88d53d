"""The container build: the Dockerfile's runtime stage is plain Debian with the shared libraries the binaries need,
its build stage links the Swift runtime statically, and the PD manifests name its image by default. (Docker cannot run
here; scripts/check_binaries.sh runs the built binaries with the toolchain hidden from the loader.)"""

from __future__ import annotations

import os
import re
import shlex
import subprocess

import yaml

from conftest import REPO

BINARIES = ["ms_coordinator", "ms_controller", "ms_deployer", "mindie_sim", "msctl"]


def stages() -> list[dict]:
    """Each stage: base image, name, and its instructions (continuations joined)."""
    text = (REPO / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    out: list[dict] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest.strip(), re.IGNORECASE)
            assert m, line
            out.append({"from": m.group(1), "name": m.group(2), "steps": []})
        else:
            assert out, f"instruction before FROM: {line}"
            out[-1]["steps"].append((word.upper(), rest.strip()))
    return out


def test_build_stage_links_the_swift_runtime_statically():
    build = stages()[0]
    assert build["from"].startswith("swift:6.3")
    runs = " ".join(r for w, r in build["steps"] if w == "RUN")
    assert "swift build -c release --static-swift-stdlib" in runs
    for exe in BINARIES:
        assert exe in runs


def test_runtime_stage_is_debian_with_installable_packages_and_no_toolchain():
    runtime = stages()[-1]
    assert runtime["name"] == "runtime" and runtime["from"].startswith("debian:bookworm")
    steps = runtime["steps"]
    copies = [r for w, r in steps if w == "COPY"]
    assert any(c.startswith("--from=build /out/ /usr/local/bin/") for c in copies), copies
    assert ("USER", "1001:1001") in steps  # the manifests' runAsUser
    install = next(r for w, r in steps if w == "RUN" and "apt-get install" in r)
    packages = [w for w in shlex.split(install.split("apt-get install", 1)[1].split("&&")[0]) if not w.startswith("-")]
    assert "libh2o-evloop0.13" in packages and "libjemalloc2" in packages
    # same Debian release as this machine: every package name must resolve here
    for p in packages:
        r = subprocess.run(["apt-cache", "show", p], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout, f"{p} is not a Debian package"
    assert not any("swift" in r.lower() for _, r in steps), "the runtime stage must not carry the toolchain"


def test_pd_manifests_name_the_runtime_image_by_default(tmp_path):
    tag = re.search(r"docker build -t (\S+) \.", (REPO / "Dockerfile").read_text()).group(1)
    spec = tmp_path / "pd.json"
    spec.write_bytes((REPO / "conf" / "infer_server_pd_cluster.json").read_bytes())
    os.chmod(spec, 0o640)
    msctl = os.path.join(os.environ.get("MINDIE_MS_BIN") or str(REPO / "out" / "bin"), "msctl")
    r = subprocess.run([msctl, "render", "infer_server", "-f", str(spec)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    containers = {c["command"][0]: c["image"]
                  for doc in yaml.safe_load_all(r.stdout) if doc and doc["kind"] == "Deployment"
                  for c in doc["spec"]["template"]["spec"]["containers"]}
    assert containers["ms_coordinator"] == tag and containers["ms_controller"] == tag, containers
