"""The PromQL metric-name extractor that the deploy/ checks rely on."""

from __future__ import annotations

import pytest

from .promql import PromQLError, grafana_query_metrics, grouping_labels, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ("sandboxd_executions_total", {"sandboxd_executions_total"}),
        ('sandboxd_executions_total{verdict="OK"}', {"sandboxd_executions_total"}),
        # label names and values inside matchers are not metrics
        ('x{job=~"a|b", le="+Inf", code!="OK"}', {"x"}),
        # a string holding what looks like a selector or a closing brace
        ('x{path="}y{", other=`z}`}', {"x"}),
        ("rate(x_total[5m])", {"x_total"}),
        ("rate(x_total[$__rate_interval])", {"x_total"}),
        ("max_over_time(rate(x_total[5m])[1h:1m])", {"x_total"}),
        # aggregation with the grouping first and last; grouping labels are not metrics
        ("sum by (le, runtime) (rate(h_bucket[5m]))", {"h_bucket"}),
        ("sum(rate(h_bucket[5m])) by (le, runtime)", {"h_bucket"}),
        ("sum without (instance, pod) (g)", {"g"}),
        ("SUM BY (le) (h_bucket)", {"h_bucket"}),
        ("histogram_quantile(0.99, sum by (le) (rate(h_bucket[5m])))", {"h_bucket"}),
        # binary operators, vector matching, numbers, durations, offset, @
        (
            "sum by (pod) (rate(a_sum[2m])) / clamp_min(sum by (pod) (rate(a_count[2m])), 1e-9)",
            {"a_sum", "a_count"},
        ),
        ("a / on (pod) group_left (runtime) b", {"a", "b"}),
        ("a > bool 0.5 and b unless c or d", {"a", "b", "c", "d"}),
        ("a offset 1h30m", {"a"}),
        ("a @ start()", {"a"}),
        ("a @ 1609746000", {"a"}),
        ("-a * 2 ^ 3 % 4", {"a"}),
        ("0x1f + .5 + 1.5e3 + Inf + NaN", set()),
        ("topk(3, sum by (runtime) (a))", {"a"}),
        ('count_values("value", a)', {"a"}),
        ('label_replace(a, "dst", "$1", "src", "(.*)")', {"a"}),
        ("atan2(a, b)", {"a", "b"}),
        # recording-rule style names with colons
        ("job:sandboxd_executions:rate5m", {"job:sandboxd_executions:rate5m"}),
        # the name as a matcher
        ('{__name__="a", job="x"}', {"a"}),
        ("{__name__ = 'a'}", {"a"}),
        # Grafana variables and the Prometheus adapter's templates
        ('a{namespace=~"$namespace", pod=~"${pod}"}', {"a"}),
        ("rate(a[[[interval]]])", {"a"}),
        ("rate(a[$interval]) * $scale", {"a"}),
        (
            "sum(rate(a_sum{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
            {"a_sum"},
        ),
        # comments
        ("a # b is not a metric\n + c", {"a", "c"}),
        ("vector(1)", set()),
    ],
)
def test_metric_names(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(
    "expr",
    [
        '{__name__=~"sandboxd_.*"}',
        '{__name__!="a"}',
        "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        'a{job="unterminated}',
        "sum by (le (a)",
        "a{b='c'",
        "a ; b",
    ],
)
def test_what_cannot_be_checked_is_an_error(expr: str) -> None:
    with pytest.raises(PromQLError):
        metric_names(expr)


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("label_values(a, namespace)", {"a"}),
        ('label_values(a{namespace=~"$namespace"}, pod)', {"a"}),
        ("label_values(namespace)", set()),
        ("query_result(topk(5, sum by (pod) (rate(b_total[5m]))))", {"b_total"}),
        ("sum(rate(c_total[5m]))", {"c_total"}),
    ],
)
def test_grafana_query_metrics(query: str, names: set[str]) -> None:
    assert grafana_query_metrics(query) == names


def test_grafana_metrics_function_is_an_error() -> None:
    with pytest.raises(PromQLError):
        grafana_query_metrics("metrics(sandboxd_.*)")


@pytest.mark.parametrize(
    ("expr", "labels"),
    [
        ("sum(a)", set()),
        ("sum by (le, runtime) (rate(h_bucket[5m]))", {"le", "runtime"}),
        ("sum(rate(h_bucket[5m])) BY (verdict)", {"verdict"}),
        ("a / on (pod) group_left (runtime) b", {"pod", "runtime"}),
        ("a / ignoring (code) group_right b", {"code"}),
        ("sum without (instance) (a)", {"instance"}),
        ("sum(rate(a_sum{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)", set()),
        ('sum by (quota) (a{quota="x"})', {"quota"}),
    ],
)
def test_grouping_labels(expr: str, labels: set[str]) -> None:
    assert grouping_labels(expr) == labels
