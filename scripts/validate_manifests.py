#!/usr/bin/env python3
"""Validates the Deployer's generated manifests against the real Kubernetes OpenAPI schemas.

Uses the `kubernetes-validate` package (JSON schemas generated from Kubernetes' OpenAPI spec), in strict mode
(unknown fields are errors). Input: the golden manifests (Tests/DeployerTests/Golden/*.json, JSON arrays of
objects) by default, or any files given: JSON arrays/objects or YAML streams (e.g. the output of
`msctl render infer_server -f conf/infer_server.json`, or `-` for stdin).

    python3 -m venv /tmp/kv-venv && /tmp/kv-venv/bin/pip install kubernetes-validate
    /tmp/kv-venv/bin/python scripts/validate_manifests.py [--k8s-version 1.30] [FILE ...]

Exit 0 when every object is valid, 1 otherwise, 2 when the package is missing.
"""
import argparse
import glob
import json
import os
import sys

try:
    import kubernetes_validate
    import yaml
except ImportError:
    sys.stderr.write("validate_manifests: needs `pip install kubernetes-validate` (in a venv)\n")
    sys.exit(2)


def load(path):
    text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
    try:
        doc = json.loads(text)
        return doc if isinstance(doc, list) else [doc]
    except json.JSONDecodeError:
        return [d for d in yaml.safe_load_all(text) if d]


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*")
    ap.add_argument("--k8s-version", default="1.30")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(os.path.join(root, "Tests/DeployerTests/Golden/*.json")) +
                                 glob.glob(os.path.join(root, "Tests/DeployerTests/Golden/*.yaml")))
    passed = failed = 0
    for path in files:
        for obj in load(path):
            ref = "%s %s/%s" % (os.path.basename(path), obj.get("kind"), obj.get("metadata", {}).get("name"))
            try:
                kubernetes_validate.validate(obj, args.k8s_version, strict=True)
                passed += 1
            except kubernetes_validate.ValidationError as e:
                failed += 1
                where = ".".join(str(p) for p in e.path)
                print("FAIL %s: %s: %s" % (ref, where, e.message))
            except Exception as e:  # schema not found and friends
                failed += 1
                print("FAIL %s: %s" % (ref, e))
    print("%d passed, %d failed" % (passed, failed))
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
