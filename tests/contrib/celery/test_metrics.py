"""The bridge's Prometheus metrics, scraped over HTTP from a listener-side endpoint and from
a real worker's endpoint, while real workers (or none: a backlog) handle real messages."""

import socket
import time
import urllib.error
import urllib.request

import pytest
from requirements import require_module

require_module("celery", extra="celery", what="the Celery metrics tests")
require_module("prometheus_client", extra="metrics", what="the Celery metrics tests")

from celery import Celery  # noqa: E402
from celery_cluster import KEY, TOKEN, cluster_env, start_listener, start_worker  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from watchers_bot.contrib.celery import Bridge  # noqa: E402


def scrape(url, host=None):
    request = urllib.request.Request(url, headers={"Host": host} if host else {})
    with urllib.request.urlopen(request, timeout=5) as answer:
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name + "".join(f"{{{k}={v}}}" for k, v in sorted(sample.labels.items()))
            samples[key] = sample.value
    return samples


def wait_for_sample(url, key, value, timeout=30.0):
    end = time.monotonic() + timeout
    while True:
        samples = scrape(url)
        if samples.get(key) == value:
            return samples
        if time.monotonic() > end:
            raise TimeoutError(f"{key} is {samples.get(key)}, not {value}, after {timeout:g}s")
        time.sleep(0.1)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_backlog_then_handled_and_answered(redis_server, emu, procs, tmp_path):
    bridge = Bridge(Celery("metrics_test", broker=redis_server.url), lambda msg: None)
    env = cluster_env(redis_server.url, emu, TOKEN, KEY)
    procs.append(start_listener("l", env, ["a", "b"], log_dir=str(tmp_path)))
    emu.wait_for_listeners("a", 1, timeout=30)
    emu.wait_for_listeners("b", 1, timeout=30)
    for i in range(5):
        emu.post("a", f"a{i}")
    for i in range(3):
        emu.post("b", f"b{i}")
    with bridge.serve_metrics(0) as metrics:
        # No worker yet: the lanes and the broker queue show the backlog.
        samples = wait_for_sample(metrics.url, "watchers_messages_in_total", 8.0)
        assert samples["watchers_room_backlog{room=proj:a}"] == 5
        assert samples["watchers_room_backlog{room=proj:b}"] == 3
        assert samples["watchers_room_lag_seconds{room=proj:a}"] > 0
        assert samples["watchers_broker_queue_length{queue=celery}"] >= 2
        assert samples["watchers_messages_handled_total"] == 0

        port = free_port()
        env["WATCHERS_TEST_METRICS_PORT"] = str(port)
        procs.append(start_worker("w", env, log_dir=str(tmp_path)))
        emu.wait_for(lambda e: len([m for m in e.sent if m.text.startswith("re:")]) == 8, 30,
                     what="8 replies")
        samples = wait_for_sample(metrics.url, "watchers_replies_total", 8.0)
        assert samples["watchers_messages_handled_total"] == 8
        assert samples["watchers_handler_seconds_count"] == 8
        assert samples["watchers_handler_seconds_bucket{le=+Inf}"] == 8
        assert samples["watchers_duplicates_suppressed_total"] == 0
        assert not any(key.startswith("watchers_room_backlog") for key in samples)

        # The worker's own endpoint (watchers_metrics_port) shows the same deployment.
        worker_url = f"http://127.0.0.1:{port}/metrics"
        wait_for_sample(worker_url, "watchers_replies_total", 8.0, timeout=15)

        # Loopback only: a request naming another host (DNS rebinding) is refused.
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(metrics.url, host="evil.example:80")
        assert refused.value.code == 403
        refused.value.close()
