"""/metrics of a running service, parsed with prometheus-client's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.service import Service

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(svc: Service) -> tuple[Samples, dict[str, str]]:
    """(samples by name and labels, type by family name) of one scrape, without a signature (like
    any exporter)."""
    r = httpx.get(f"http://{svc.endpoint}/metrics", timeout=10)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    types: dict[str, str] = {}
    for fam in text_string_to_metric_families(r.text):
        assert fam.name.startswith("cloudmig_"), fam.name
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))
