"""The dashboard/rules-vs-/metrics check itself: it finds names in PromQL and names what is missing."""
from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, generate_latest

from tests.observability import collect_uses, compare, promql_names


def test_promql_names_skips_functions_labels_keywords_and_strings():
    expr = ('histogram_quantile(0.99, sum by (target, le) (rate(eventweir_delivery_latency_seconds_bucket'
            '{namespace=~"$namespace", target="eventweir_fake"}[$__rate_interval]))) '
            '/ on (namespace) group_left count by (namespace) (eventweir_ready == 1) or eventweir:consumer_lag:sum')
    assert promql_names(expr) == {"eventweir_delivery_latency_seconds_bucket", "eventweir_ready",
                                  "eventweir:consumer_lag:sum"}


def full_scrape() -> str:
    """/metrics text with every family the dashboards use (as the worker declares them)."""
    from prometheus_client import REGISTRY

    import streams.metrics  # noqa: F401
    import streams.metrics.waitingroom  # noqa: F401

    return generate_latest(REGISTRY).decode()


def drop_family(text: str, family: str) -> str:
    return "\n".join(line for line in text.splitlines()
                     if not re.match(rf"(# (HELP|TYPE) )?{family}(_total|_bucket|_sum|_count|_created)?[ {{]", line)) + "\n"


def test_a_panel_metric_the_worker_lacks_is_named_with_its_panel():
    problems = compare(drop_family(full_scrape(), "eventweir_rule_matches"))
    missing = [p for p in problems if "eventweir_rule_matches_total" in p]
    assert missing and "not exported by the worker" in missing[0]
    assert "panel 'Rule matches per rule'" in missing[0]


def test_a_new_worker_metric_without_panel_is_reported():
    extra = CollectorRegistry()
    Counter("eventweir_future_feature", "A metric added later.", ["target"], registry=extra).labels("lake").inc()
    problems = compare(full_scrape() + generate_latest(extra).decode())
    assert [p for p in problems if p.startswith("exported but on no dashboard panel: eventweir_future_feature ")]


def test_every_alert_and_panel_expression_yields_names():
    uses = collect_uses()
    assert "eventweir_records_consumed_total" in uses.panels
    assert "eventweir_waitingroom_waiting" in uses.rules
