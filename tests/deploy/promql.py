"""The metric names a PromQL expression reads, for checking dashboards and autoscaler rules
against what the daemon exports. Pure logic: a small lexer, no PromQL parser.

A name is an identifier that is not a function or aggregation (followed by `(`, or an
aggregation followed by `by`/`without`), not a keyword, and not inside a grouping list
(`by (...)`, `without`, `on`, `ignoring`, `group_left`, `group_right`), a label matcher block
`{...}`, a range or subquery `[...]` or a string. `{__name__="x"}` names `x`; a regex on
`__name__` cannot be checked and is an error. Grafana variables (`$x`, `${x}`, `[[x]]`) and
the Prometheus adapter's templates (`<<.LabelMatchers>>`) are ignored, except `<<.Series>>`,
which stands for a metric name and is an error for the same reason as a regex.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

GROUPING = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
AGGREGATIONS = frozenset(
    {
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    }
)
KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})

_NUMBER = re.compile(
    r"(?:\d+(?:ms|[smhdwy]))+(?![\w:])"  # a duration (offset 5m, 1h30m)
    r"|0[xX][0-9a-fA-F]+"
    r"|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
)
_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
_GRAFANA_VAR = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_]\w*")
_NAME_MATCHER = re.compile(r"""__name__\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')""")
_OPERATORS = ("==", "!=", ">=", "<=", "=~", "!~", "+", "-", "*", "/", "%", "^", ">", "<", "@", "=")


class PromQLError(ValueError):
    """The expression names metrics in a way this extractor cannot check."""


@dataclass(frozen=True)
class Token:
    kind: str  # ident, number, string, paren, comma, op, matchers, range, variable, template
    text: str


def tokens(expr: str) -> list[Token]:
    out: list[Token] = []
    i, n = 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "#":  # a comment, to the end of the line
            end = expr.find("\n", i)
            i = n if end < 0 else end
        elif c in "\"'`":
            end = _string_end(expr, i)
            out.append(Token("string", expr[i:end]))
            i = end
        elif c == "{":
            end = _block_end(expr, i, "{", "}")
            out.append(Token("matchers", expr[i:end]))
            i = end
        elif expr.startswith("<<", i):
            end = expr.find(">>", i)
            if end < 0:
                raise PromQLError(f"unterminated template at {i}: {expr[i:]!r}")
            out.append(Token("template", expr[i : end + 2]))
            i = end + 2
        elif (m := _GRAFANA_VAR.match(expr, i)) is not None:
            out.append(Token("variable", m.group()))
            i = m.end()
        elif c == "[":  # a range or subquery, or Grafana's [[variable]]: nested brackets
            end = _block_end(expr, i, "[", "]")
            out.append(Token("range", expr[i:end]))
            i = end
        elif c in "()":
            out.append(Token("paren", c))
            i += 1
        elif c == ",":
            out.append(Token("comma", c))
            i += 1
        elif (m := _NUMBER.match(expr, i)) is not None:
            out.append(Token("number", m.group()))
            i = m.end()
        elif (m := _IDENT.match(expr, i)) is not None:
            out.append(Token("ident", m.group()))
            i = m.end()
        else:
            op = next((o for o in _OPERATORS if expr.startswith(o, i)), None)
            if op is None:
                raise PromQLError(f"unexpected {c!r} at {i} in {expr!r}")
            out.append(Token("op", op))
            i += len(op)
    return out


def metric_names(expr: str) -> set[str]:
    """Every metric name `expr` selects."""
    toks = tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(toks):
        tok = toks[i]
        following = toks[i + 1] if i + 1 < len(toks) else None
        if tok.kind == "template" and tok.text.replace(" ", "") == "<<.Series>>":
            raise PromQLError(f"<<.Series>> hides the metric name in {expr!r}; name it")
        if tok.kind == "matchers":
            names |= _names_in_matchers(tok.text, expr)
        elif tok.kind == "ident":
            word = tok.text.lower()
            if word in GROUPING:
                if following is not None and following.text == "(":
                    i = _paren_end(toks, i + 1, expr)
                    continue
            elif word in KEYWORDS:
                pass
            elif following is not None and following.text == "(":
                pass  # a function or an aggregation
            elif (
                word in AGGREGATIONS
                and following is not None
                and following.text.lower() in ("by", "without")
            ):
                pass
            else:
                names.add(tok.text)
        i += 1
    return names


def grouping_labels(expr: str) -> set[str]:
    """The label names in every `by`, `without`, `on`, `ignoring`, `group_left` and
    `group_right` list of `expr` (templates and variables left out)."""
    toks = tokens(expr)
    labels: set[str] = set()
    for i, tok in enumerate(toks):
        following = toks[i + 1] if i + 1 < len(toks) else None
        if tok.kind == "ident" and tok.text.lower() in GROUPING and following is not None:
            if following.text != "(":
                continue
            end = _paren_end(toks, i + 1, expr)
            labels |= {t.text for t in toks[i + 2 : end - 1] if t.kind == "ident"}
    return labels


def grafana_query_metrics(query: str) -> set[str]:
    """Metric names in a Grafana Prometheus query: a PromQL expression, or a template
    variable query (`label_values(selector, label)`, `label_values(label)`,
    `query_result(expr)`)."""
    q = query.strip()
    if m := re.fullmatch(r"label_values\((.*),\s*[A-Za-z_]\w*\s*\)", q, re.DOTALL):
        return metric_names(m.group(1))
    if re.fullmatch(r"label_values\(\s*[A-Za-z_]\w*\s*\)", q):
        return set()
    if m := re.fullmatch(r"query_result\((.*)\)", q, re.DOTALL):
        return metric_names(m.group(1))
    if re.fullmatch(r"metrics\(.*\)", q, re.DOTALL):
        raise PromQLError(f"metrics() selects names by regex: {query!r}")
    return metric_names(q)


def _names_in_matchers(block: str, expr: str) -> set[str]:
    names = set()
    for op, quoted in _NAME_MATCHER.findall(block):
        if op != "=":
            raise PromQLError(f"__name__{op} cannot be checked: {block!r} in {expr!r}")
        names.add(quoted[1:-1])
    return names


def _string_end(expr: str, start: int) -> int:
    quote = expr[start]
    i = start + 1
    while i < len(expr):
        if expr[i] == "\\" and quote != "`":
            i += 2
            continue
        if expr[i] == quote:
            return i + 1
        i += 1
    raise PromQLError(f"unterminated string at {start} in {expr!r}")


def _block_end(expr: str, start: int, opening: str, closing: str) -> int:
    depth = 0
    i = start
    while i < len(expr):
        c = expr[i]
        if c in "\"'`":
            i = _string_end(expr, i)
            continue
        if c == opening:
            depth += 1
        elif c == closing:
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise PromQLError(f"unbalanced {opening!r} at {start} in {expr!r}")


def _paren_end(toks: list[Token], start: int, expr: str) -> int:
    """Index after the `)` that closes the `(` at toks[start]."""
    depth = 0
    for j in range(start, len(toks)):
        if toks[j].text == "(":
            depth += 1
        elif toks[j].text == ")":
            depth -= 1
            if depth == 0:
                return j + 1
    raise PromQLError(f"unbalanced parentheses in {expr!r}")
