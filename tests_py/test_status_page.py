"""The Coordinator's live status page in a real browser: a local 2P2D cluster (scripts/local_cluster.py), the page
loaded by headless Chromium (Debian `chromium`, installed by scripts/run_python_tests.sh), its DOM read after the
page's own polls of /v1/cluster, one instance killed and the page showing it down. Screenshots are kept in the
test's tmp dir (status_page.png, status_page_after_kill.png)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser

import openai
import requests

from conftest import REPO
from e2e_util import MODEL

sys.path.insert(0, str(REPO / "scripts"))
import local_cluster  # noqa: E402

TIMEOUT = 30


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "headless Chromium is needed (Debian: apt-get install chromium; scripts/run_python_tests.sh installs it)"
    return path


def chromium(args, tmp_path, timeout=90):
    profile = tmp_path / "chromium-profile"
    cmd = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def dump_dom(url, tmp_path):
    # virtual time: the page's timers run (its first polls of /v1/cluster) before the DOM is printed
    return chromium(["--virtual-time-budget=2500", "--dump-dom", url], tmp_path)


class Cards(HTMLParser):
    """The instance cards of the page: id -> (role, state); and the page's poll count."""

    def __init__(self):
        super().__init__()
        self.cards = {}
        self.polls = None
        self.links = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "main" and a.get("id") == "app":
            self.polls = int(a.get("data-polls", "0"))
        if tag == "div" and "card" in (a.get("class") or "").split() and "data-instance-id" in a:
            self.cards[int(a["data-instance-id"])] = (a["data-role"], a["data-state"])
        if tag == "path" and "pd-link" in (a.get("class") or "").split():
            self.links.append((int(a["data-prefill"]), int(a["data-decode"]), a["data-link"]))


def read_page(url, tmp_path):
    p = Cards()
    p.feed(dump_dom(url, tmp_path))
    return p


def test_status_page_shows_the_cluster_and_an_instance_going_down(tmp_path):
    chromium_path()
    c = local_cluster.LocalCluster(mode="pd", p=2, d=2, speedup=4, base_port=29025, first_ip=130,
                                   workdir=str(tmp_path / "cluster"),
                                   binaries=os.environ.get("MINDIE_MS_BIN") or str(REPO / "out" / "bin"))
    try:
        c.start()
        status = f"http://127.0.0.1:{c.coord_ports['status']}"
        external = f"http://127.0.0.1:{c.coord_ports['external']}"
        data = f"http://127.0.0.1:{c.coord_ports['predict']}"
        client = openai.OpenAI(base_url=f"{data}/v1", api_key="x", max_retries=0, timeout=TIMEOUT)
        for _ in range(4):
            list(client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                max_tokens=8, stream=True))
        # a request the Coordinator refuses shows in the recent errors
        bad = requests.post(f"{data}/v1/chat/completions", data=b"{not json", timeout=TIMEOUT,
                            headers={"content-type": "application/json"})
        assert bad.status_code == 400

        # the JSON, on the status and the external port
        for base in (status, external):
            r = requests.get(f"{base}/v1/cluster", timeout=TIMEOUT)
            assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
            doc = r.json()
            roles = {i["id"]: (i["role"], i["state"]) for i in doc["instances"]}
            assert roles == {0: ("prefill", "up"), 1: ("prefill", "up"), 2: ("decode", "up"), 3: ("decode", "up")}, doc
            assert sorted((l["prefill"], l["decode"], l["link"]) for l in doc["pd_links"]) == [
                (0, 2, "up"), (0, 3, "up"), (1, 2, "up"), (1, 3, "up")]
            assert doc["coordinator"]["ttft_ms"]["count"] >= 4 and doc["coordinator"]["ttft_ms"]["p50"] > 0
            assert doc["coordinator"]["itl_ms"]["count"] > 0
            assert any(e["status"] == 400 and "invalid" in e["message"] for e in doc["recent_errors"]), doc["recent_errors"]
            assert doc["controller"]["leader"] == "n/a" and doc["coordinator"]["master"] == "n/a"

        # the page: HTML for a browser on the status and external ports, never on the data port (TGI's /)
        for base in (status, external):
            r = requests.get(f"{base}/", headers={"accept": "text/html"}, timeout=TIMEOUT)
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html"), r.text[:200]
            assert "<title>MindIE-MS cluster</title>" in r.text and 'fetch("v1/cluster"' in r.text
            assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text), "the page must load nothing from elsewhere"
        r = requests.get(f"{data}/", headers={"accept": "text/html"}, timeout=TIMEOUT)
        assert "MindIE-MS cluster" not in r.text

        # in the browser: the page polled and drew the four instances with their roles and the P→D links
        page = read_page(f"{status}/", tmp_path)
        assert page.polls and page.polls >= 1
        assert page.cards == {0: ("prefill", "up"), 1: ("prefill", "up"), 2: ("decode", "up"), 3: ("decode", "up")}, page.cards
        assert sorted(page.links) == [(0, 2, "up"), (0, 3, "up"), (1, 2, "up"), (1, 3, "up")]
        shot = tmp_path / "status_page.png"
        chromium(["--window-size=1400,1250", "--virtual-time-budget=2500", f"--screenshot={shot}", f"{external}/"], tmp_path)
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000

        # a D dies: its result link breaks at once, then the Controller unpublishes it; the page shows it down or gone
        c.kill_process("sim2")
        deadline = time.time() + 60
        while True:
            page = read_page(f"{status}/", tmp_path)
            if page.cards.get(2, ("", ""))[1] in ("down", "gone"):
                break
            assert time.time() < deadline, f"the page never showed instance 2 down: {page.cards}"
            time.sleep(0.5)
        assert page.cards[2][0] == "decode"
        assert {k: v for k, v in page.cards.items() if k != 2} == {0: ("prefill", "up"), 1: ("prefill", "up"), 3: ("decode", "up")}
        doc = requests.get(f"{status}/v1/cluster", timeout=TIMEOUT).json()
        two = next(i for i in doc["instances"] if i["id"] == 2)
        assert two["state"] in ("down", "gone") and two["reason"], two
        chromium(["--window-size=1400,1250", "--virtual-time-budget=2500",
                  f"--screenshot={tmp_path / 'status_page_after_kill.png'}", f"{status}/"], tmp_path)
        assert (tmp_path / "status_page_after_kill.png").stat().st_size > 20_000
    finally:
        c.stop()


def test_cluster_json_refuses_other_methods_and_the_page_needs_a_browser_accept(tmp_path):
    c = local_cluster.LocalCluster(mode="single", instances=1, speedup=4, base_port=29125, first_ip=140,
                                   workdir=str(tmp_path / "cluster"),
                                   binaries=os.environ.get("MINDIE_MS_BIN") or str(REPO / "out" / "bin"))
    try:
        c.start()
        status = f"http://127.0.0.1:{c.coord_ports['status']}"
        r = requests.post(f"{status}/v1/cluster", data=b"{}", timeout=TIMEOUT)
        assert r.status_code == 405 and r.headers["allow"] == "GET" and "/v1/cluster" in r.json()["message"]
        # a script asking for / without text/html keeps the port's own answer (a JSON 404 naming the path)
        r = requests.get(f"{status}/", headers={"accept": "application/json"}, timeout=TIMEOUT)
        assert r.status_code == 404
        doc = requests.get(f"{status}/v1/cluster", timeout=TIMEOUT).json()
        assert doc["deploy_mode"] == "single_node" and [i["role"] for i in doc["instances"]] == ["mixed"]
        assert doc["instances"][0]["link"] is None and doc["pd_links"] == []
        json.dumps(doc)
    finally:
        c.stop()
