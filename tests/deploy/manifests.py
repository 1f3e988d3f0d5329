"""deploy/ as data: every Kubernetes object, the dashboard's queries, the adapter's rules."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEPLOY = os.path.join(REPO, "deploy")
KUBERNETES = os.path.join(DEPLOY, "kubernetes")
MONITORING = os.path.join(KUBERNETES, "monitoring")
DASHBOARD = os.path.join(DEPLOY, "grafana", "sandboxd.json")
ADAPTER_VALUES = os.path.join(MONITORING, "prometheus-adapter-values.yaml")
KUSTOMIZATION = os.path.join(KUBERNETES, "kustomization.yaml")


@dataclass(frozen=True)
class Manifest:
    path: str  # relative to the repository
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])


def yaml_files() -> list[str]:
    return sorted(
        os.path.join(d, f)
        for d, _dirs, files in os.walk(KUBERNETES)
        for f in files
        if f.endswith((".yaml", ".yml"))
    )


def load_documents(path: str) -> list[Any]:
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def objects() -> list[Manifest]:
    """Every Kubernetes object under deploy/kubernetes (not the kustomization or the Helm
    values, which are configuration files, not objects)."""
    found = []
    for path in yaml_files():
        for doc in load_documents(path):
            if isinstance(doc, dict) and "apiVersion" in doc and doc.get("kind") != "Kustomization":
                found.append(Manifest(os.path.relpath(path, REPO), doc))
    return found


def kustomization() -> dict[str, Any]:
    (doc,) = load_documents(KUSTOMIZATION)
    assert isinstance(doc, dict)
    return doc


def kustomized() -> list[Manifest]:
    """The objects `kubectl apply -k deploy/kubernetes` creates."""
    found = []
    for resource in kustomization()["resources"]:
        path = os.path.join(KUBERNETES, resource)
        for doc in load_documents(path):
            found.append(Manifest(os.path.relpath(path, REPO), doc))
    return found


def one(manifests: list[Manifest], kind: str, name: str) -> dict[str, Any]:
    matches = [m.obj for m in manifests if m.kind == kind and m.name == name]
    assert len(matches) == 1, f"{len(matches)} {kind} named {name!r}"
    return matches[0]


def dashboard() -> dict[str, Any]:
    with open(DASHBOARD) as f:
        doc = json.load(f)
    assert isinstance(doc, dict)
    return doc


def panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dash["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def dashboard_queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, query) for every Prometheus query: panel targets and template variables."""
    queries = []
    for panel in panels(dash):
        for target in panel.get("targets", []):
            queries.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for var in dash.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            query = var["query"]
            text = query["query"] if isinstance(query, dict) else query
            queries.append((f"variable {var['name']!r}", text))
    return queries


def adapter_rules() -> list[dict[str, Any]]:
    (values,) = load_documents(ADAPTER_VALUES)
    rules = values["rules"]["custom"]
    assert isinstance(rules, list)
    return rules


def adapter_queries() -> list[tuple[str, str]]:
    queries = []
    for i, rule in enumerate(adapter_rules()):
        queries.append((f"adapter rule {i} seriesQuery", rule["seriesQuery"]))
        queries.append((f"adapter rule {i} metricsQuery", rule["metricsQuery"]))
    return queries
