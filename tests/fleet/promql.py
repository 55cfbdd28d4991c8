"""PromQL from the Grafana dashboard: its expressions, Grafana's variables filled in, and
the metric names they read.

Shared by the dashboard's tests: the syntax check (promtool) and the check that every name
is documented, and by any test that compares the names with a real scrape.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# What Grafana puts in place of its variables, for checking the expressions outside it.
# $job and $collector are only used inside =~ matchers, where ".*" matches every value.
GRAFANA_VARIABLES = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "1h",
    "job": ".*",
    "collector": ".*",
}

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
# label_values(<series selector>, <label>): a query variable, Grafana's, not PromQL
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(.+?)\s*,\s*\w+\s*\)\s*$", re.S)

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(
    r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", re.IGNORECASE
)
# an identifier not inside a longer one, a number ("1e3") or a label matcher, and not
# called like a function: metric names, and the keywords below
_IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset(
    {
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    }
)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # the panels of a collapsed row


def expressions(dashboard: dict[str, Any]) -> list[str]:
    """Every PromQL expression of the dashboard, with Grafana's variables still in.

    The panels' targets (rows' nested panels included), then the series selector of
    each `label_values(selector, label)` query variable.
    """
    found = [
        target["expr"]
        for panel in _panels(dashboard.get("panels", []))
        for target in panel.get("targets", [])
        if target.get("expr")
    ]
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = _LABEL_VALUES.match(text)
        if match:
            found.append(match.group(1))
    return found


def substitute(expr: str, values: dict[str, str] | None = None) -> str:
    """The expression with $var and ${var} replaced (GRAFANA_VARIABLES by default).

    Raises KeyError for a variable it has no value for.
    """
    table = GRAFANA_VARIABLES if values is None else values
    return _VARIABLE.sub(lambda m: table[m.group(1) or m.group(2)], expr)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads.

    Strings, label matchers, range durations and by/without/on/ignoring/group_*
    clauses with their label lists are dropped first; what is left that is an identifier, not a
    keyword and not followed by "(" (a function) is a metric name. Enough for
    selectors, aggregations, functions and binary operators; not a PromQL parser.
    """
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("{}", text)
    text = _RANGE.sub("[]", text)
    text = _GROUPING.sub(" ", text)  # "sum by (x) (" becomes "sum  (": a call
    return {name for name in _IDENTIFIER.findall(text) if name.lower() not in _KEYWORDS}
