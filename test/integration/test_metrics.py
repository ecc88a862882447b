"""GPU usage metrics: the CRI metrics RPCs and the Prometheus endpoint, checked by promtool and
scraped by a real Prometheus server (Debian's prometheus package). The broker runs on the soft
TEST device (no GPU in CI)."""
import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


PORT = free_port()


@pytest.fixture
def daemon_config():
    return {"gpu": {"backend": "soft", "metrics_address": "127.0.0.1:%d" % PORT}}


def scrape():
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % PORT, timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        return r.read().decode()


def test_metric_descriptors(daemon, pb):
    r = daemon.runtime.ListMetricDescriptors(pb.ListMetricDescriptorsRequest())
    names = {d.name: d for d in r.descriptors}
    for n in ("vgpu_gpu_memory_used_bytes", "vgpu_gpu_memory_limit_bytes", "vgpu_gpu_memory_peak_bytes",
              "vgpu_gpu_kernel_launches_total", "vgpu_gpu_busy_nanoseconds_total", "vgpu_gpu_htod_bytes_total",
              "vgpu_gpu_dtoh_bytes_total", "vgpu_gpu_api_calls_total", "vgpu_gpu_api_errors_total",
              "vgpu_gpu_share_turn_nanoseconds_total", "vgpu_gpu_share_wait_nanoseconds_total"):
        assert n in names, n
        assert list(names[n].label_keys) == ["namespace", "pod", "uid"]
        assert names[n].help
    # no GPU pods yet
    assert not daemon.runtime.ListPodSandboxMetrics(pb.ListPodSandboxMetricsRequest()).pod_metrics


def test_status_says_soft_device_in_log(daemon):
    assert "SOFT TEST DEVICE" in daemon.log()


def test_prometheus_text_passes_promtool(daemon):
    text = scrape()
    assert 'vgpu_gpu_backend{backend="soft"} 1' in text
    r = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen("http://127.0.0.1:%d/other" % PORT, timeout=10)
    assert e.value.code == 404
    req = urllib.request.Request("http://127.0.0.1:%d/metrics" % PORT, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=10)
    assert e.value.code == 405


def test_real_prometheus_scrapes_us(daemon, tmp_path):
    prom_port = free_port()
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: vgpu\n"
                   "    static_configs:\n      - targets: ['127.0.0.1:%d']\n" % PORT)
    proc = subprocess.Popen(["prometheus", "--config.file=%s" % cfg, "--storage.tsdb.path=%s" % (tmp_path / "data"),
                             "--web.listen-address=127.0.0.1:%d" % prom_port],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        result = []
        while time.time() < deadline and not result:
            time.sleep(1)
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/api/v1/query?query=vgpu_gpu_backend" % prom_port,
                                            timeout=5) as r:
                    result = json.loads(r.read())["data"]["result"]
            except OSError:
                continue
        assert result, "prometheus never scraped vgpu_gpu_backend"
        assert result[0]["metric"]["backend"] == "soft"
        assert result[0]["value"][1] == "1"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.mark.parametrize("daemon_config", [{"gpu": {"metrics_address": "0.0.0.0:9464"}}])
def test_non_loopback_metrics_address_refused(daemon_config, tmp_path):
    from conftest import DAEMON_BIN
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"socket": str(tmp_path / "s.sock"), "state_dir": str(tmp_path / "st"),
                               "run_dir": str(tmp_path / "run"), "gpu": {"metrics_address": "0.0.0.0:9464"}}))
    r = subprocess.run([DAEMON_BIN, "--config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "loopback" in r.stderr
