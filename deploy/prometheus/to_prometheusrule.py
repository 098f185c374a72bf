"""Writes deploy/k8s/base/prometheusrule.yaml: rules.yaml wrapped in a prometheus-operator
PrometheusRule, so a cluster with the operator loads the same rules promtool checks.

    python deploy/prometheus/to_prometheusrule.py   # after editing rules.yaml (a test checks they match)
"""
from __future__ import annotations

from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
TARGET = HERE.parent / "k8s" / "base" / "prometheusrule.yaml"
HEADER = "# Generated from deploy/prometheus/rules.yaml by deploy/prometheus/to_prometheusrule.py: edit that file.\n"


class _Dumper(yaml.SafeDumper):
    """Multi-line expressions stay readable block scalars (`|`), as in rules.yaml."""


_Dumper.add_representer(str, lambda d, s: d.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def render() -> str:
    groups = yaml.safe_load((HERE / "rules.yaml").read_text())["groups"]
    rule = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": {"name": "eventweir"}, "spec": {"groups": groups}}
    return HEADER + yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)


if __name__ == "__main__":
    TARGET.write_text(render())
    print(f"wrote {TARGET}")
