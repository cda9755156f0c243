#!/usr/bin/python3
"""Draws a Grafana dashboard's panels from a real Prometheus into a PNG.

Grafana itself cannot be installed here (no Debian package, no registry carries it), so
this reads the dashboard JSON as the chart ships it and asks Prometheus exactly what each
panel's targets ask (`/api/v1/query_range`, or `/api/v1/query` for instant targets), then
lays the panels out on Grafana's 24-column grid (gridPos) with their titles, units and
legends. What it does not draw: field overrides, thresholds, panel types other than
timeseries/graph, table and row (those say so in the picture).

Template variables are substituted the way Grafana does for a first load:
  - `label_values(metric, label)` query variables: every value Prometheus has in the time
    range, as a regex alternation when the variable is multi/includeAll (Grafana's "All"
    without a custom allValue), else the first value; `--var NAME=VALUE` overrides;
  - `$__interval` is the query step: the time range over the panel's width in pixels, no
    less than the scrape interval (Grafana's maxDataPoints and min interval);
  - `$__rate_interval` is max(`$__interval` + scrape interval, 4 x scrape interval), as
    Grafana defines it; `$__range` is the whole range.

Usage: render-dashboard.py --dashboard FILE --prometheus URL --start UNIX --end UNIX
       [--scrape-interval SECONDS] [--var NAME=VALUE] --out FILE.png
FILE is the dashboard JSON, or `helm template` output holding the ConfigMap labelled
grafana_dashboard: "1" (the chart's templates/monitoring/grafana-dashboard.yaml).
"""

import argparse
import json
import math
import re
import sys
import urllib.parse
import urllib.request
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")  # no display: files only
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import yaml  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402
from PIL import Image  # noqa: E402

# Grafana's dark theme and classic palette, so the picture reads like the real thing.
BG, PANEL, TEXT, MUTED, GRID = "#111217", "#181b1f", "#ccccdc", "#8e8e8e", "#2c3235"
PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9",
           "#705DA0", "#37872D", "#FADE2A", "#447EBC", "#C15C17", "#890F02", "#0A437C"]
WIDTH_PX, CELL_PX, DPI = 1500, 34, 100  # a grid row is 30 px plus the 4 px gutter


def load_dashboard(path):
    """The dashboard JSON, from a JSON file or from the chart's rendered ConfigMap."""
    text = open(path, encoding="utf-8").read()
    if text.lstrip().startswith("{"):
        return json.loads(text)
    for doc in yaml.safe_load_all(text):
        labels = ((doc or {}).get("metadata") or {}).get("labels") or {}
        if doc.get("kind") == "ConfigMap" and labels.get("grafana_dashboard") == "1":
            return json.loads(next(iter(doc["data"].values())))
    sys.exit(f"render-dashboard: {path}: no ConfigMap labelled grafana_dashboard=1")


class Prometheus:
    """The two HTTP API calls a Grafana Prometheus data source makes for these panels."""

    def __init__(self, url):
        self.url = url.rstrip("/")

    def get(self, path, **params):
        query = urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as r:
            body = json.load(r)
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body}")
        return body["data"]


def variables(dash, prom, start, end, overrides):
    """Template variable values (regex-joined where Grafana would join them), and the same
    as the variable picker shows them."""
    out, shown = {}, {}
    for v in dash.get("templating", {}).get("list", []):
        name = v["name"]
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.fullmatch(r"\s*label_values\(\s*(.+?)\s*,\s*(\w+)\s*\)\s*", q or "")
        if name in overrides:
            out[name] = shown[name] = overrides[name]
        elif v.get("type") == "query" and m:
            vals = prom.get(f"label/{m.group(2)}/values", **{"match[]": m.group(1),
                                                              "start": start, "end": end})
            many = v.get("includeAll") or v.get("multi")
            shown[name] = " + ".join(vals if many else vals[:1])
            vals = [re.escape(x) for x in vals]
            out[name] = ("(" + "|".join(vals) + ")" if many else vals[0]) if vals else ""
        elif v.get("type") in ("custom", "constant", "textbox"):
            out[name] = shown[name] = str((v.get("current") or {}).get("value", q or ""))
    return out, shown


def substitute(expr, values):
    """`$name` and `${name}` replaced, longest names first (so $__interval does not eat
    $__interval_ms and the like)."""
    for name in sorted(values, key=len, reverse=True):
        expr = expr.replace("${" + name + "}", values[name])
        expr = re.sub(r"\$" + re.escape(name) + r"\b", lambda _m, n=name: values[n], expr)
    return expr


def legend(fmt, metric):
    """A series' name: the target's legendFormat with `{{label}}` filled in."""
    if not fmt or fmt == "__auto":
        labels = {k: v for k, v in metric.items() if k != "__name__"}
        return metric.get("__name__", "") + "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: metric.get(m.group(1), ""), fmt).strip()


def fmt_value(v, unit):
    """A value as Grafana shows it for the units this chart uses."""
    if v is None or math.isnan(v):
        return "-"
    a = abs(v)
    if unit in ("s", "ms"):
        s = v / 1000 if unit == "ms" else v
        for size, name in ((31536000, "year"), (604800, "week"), (86400, "day"),
                           (3600, "hour"), (60, "min"), (1, "s"), (1e-3, "ms"), (1e-6, "µs")):
            if abs(s) >= size or size == 1e-6:
                return f"{s / size:.3g} {name}" if s else "0 s"
    if unit == "bytes":
        for size, name in ((2**40, "TiB"), (2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
            if a >= size:
                return f"{v / size:.3g} {name}"
        return f"{v:.3g} B"
    suffix = {"cps": " c/s", "ops": " ops/s", "reqps": " req/s", "percent": "%"}.get(unit, "")
    if unit == "percentunit":
        return f"{v * 100:.3g}%"
    for size, name in ((1e12, " Tri"), (1e9, " Bil"), (1e6, " Mil"), (1e3, " K")):
        if a >= size:
            return f"{v / size:.3g}{name}{suffix}"
    return f"{v:.3g}{suffix}"


def panels_of(dash):
    """Every panel, rows included, in the dashboard's order."""
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])  # a collapsed row keeps its panels inside


def draw(args):
    """The whole picture: title bar, then every panel at its gridPos."""
    dash = load_dashboard(args.dashboard)
    prom = Prometheus(args.prometheus)
    rng = args.end - args.start
    overrides = dict(kv.split("=", 1) for kv in args.var)
    values, picked = variables(dash, prom, args.start, args.end, overrides)
    panels = list(panels_of(dash))
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    head = 60  # the dashboard's title bar, in pixels
    height = head + rows * CELL_PX + 30
    fig = plt.figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI, facecolor=BG)
    plt.rcParams.update({"font.size": 8, "text.color": TEXT, "axes.labelcolor": TEXT,
                         "xtick.color": MUTED, "ytick.color": MUTED})
    px = lambda x, y: (x / WIDTH_PX, 1 - y / height)  # noqa: E731 pixels from top left
    shown = ", ".join(f"{k} = {v}" for k, v in picked.items() if v)
    t0 = datetime.fromtimestamp(args.start, timezone.utc).strftime("%Y-%m-%d %H:%M")
    t1 = datetime.fromtimestamp(args.end, timezone.utc).strftime("%H:%M UTC")
    fig.text(*px(12, 26), dash.get("title", ""), fontsize=15, weight="bold", va="center")
    fig.text(*px(180, 26), f"{shown}    {t0} to {t1}", color=MUTED, fontsize=9, va="center")
    fig.text(*px(WIDTH_PX - 12, 26), "drawn by tests/support/grafana/render-dashboard.py from "
             "the chart's dashboard and a real Prometheus", color=MUTED, fontsize=8,
             va="center", ha="right")
    col = (WIDTH_PX - 8) / 24
    for p in panels:
        g = p["gridPos"]
        x0, y0 = 4 + g["x"] * col, head + g["y"] * CELL_PX
        w, h = g["w"] * col - 6, g["h"] * CELL_PX - 6
        if p.get("type") == "row":
            fig.text(*px(x0 + 4, y0 + h / 2 + 3), p.get("title", ""), fontsize=11,
                     weight="bold", va="center")
            continue
        frame = fig.add_axes([x0 / WIDTH_PX, 1 - (y0 + h) / height, w / WIDTH_PX, h / height])
        frame.set_facecolor(PANEL)
        frame.set_xticks([])
        frame.set_yticks([])
        for s in frame.spines.values():
            s.set_color(GRID)
        fig.text(*px(x0 + 8, y0 + 13), p.get("title", ""), fontsize=9, weight="bold",
                 va="center")
        body = (x0 + 8, y0 + 26, w - 16, h - 32)  # below the title
        defaults = p.get("fieldConfig", {}).get("defaults", {})
        step = max(args.scrape_interval, math.ceil(rng / max(body[2], 1)))
        builtin = {"__interval": f"{step}s", "__rate_interval":
                   f"{max(step + args.scrape_interval, 4 * args.scrape_interval)}s",
                   "__range": f"{rng}s", "__interval_ms": str(step * 1000)}
        exprs = [(t, substitute(t.get("expr", ""), {**values, **builtin}))
                 for t in p.get("targets", []) if not t.get("hide")]
        if p.get("type") == "table":
            table(fig, px, body, prom, exprs, args.end, defaults.get("unit", ""))
        elif p.get("type") in ("timeseries", "graph"):
            timeseries(fig, px, body, p, prom, exprs, args, step, defaults)
        else:
            fig.text(*px(x0 + w / 2, y0 + h / 2), f"(panel type {p.get('type')} not drawn)",
                     color=MUTED, ha="center")
    fig.savefig(args.out, dpi=DPI, facecolor=BG)
    # A palette image: the picture has few colours, and the docs want it small.
    Image.open(args.out).convert("RGB").quantize(colors=96).save(args.out, optimize=True)


def timeseries(fig, px, body, p, prom, exprs, args, step, defaults):
    """A time series panel: one line per series of each target, legend below (in the
    order Grafana lists them: target by target, as Prometheus returns the series)."""
    series = []
    for t, expr in exprs:
        data = prom.get("query_range", query=expr, start=args.start, end=args.end, step=step)
        for r in data["result"]:
            ts = [datetime.fromtimestamp(float(a), timezone.utc) for a, _ in r["values"]]
            vs = [float(b) for _, b in r["values"]]
            series.append((legend(t.get("legendFormat"), r["metric"]), ts, vs))
    x, y, w, h = body
    calcs = p.get("options", {}).get("legend", {}).get("calcs", [])
    line = 13
    nleg = min(len(series), max(1, int(h * 0.4 // line)))
    ax = fig.add_axes([(x + 62) / fig.bbox.width, 1 - (y + h - nleg * line - 18) / fig.bbox.height,
                       (w - 66) / fig.bbox.width, (h - nleg * line - 22) / fig.bbox.height])
    ax.set_facecolor(PANEL)
    for s in ax.spines.values():
        s.set_visible(False)
    ax.grid(color=GRID, linewidth=0.6)
    ax.tick_params(length=0, labelsize=7)
    unit = defaults.get("unit", "")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: fmt_value(v, unit)))
    ax.yaxis.set_major_locator(MaxNLocator(4))
    ax.set_xticks(time_ticks(args.start, args.end, max(2, int(w // 95))))
    # Seconds on the axis for short ranges, as Grafana does.
    short = args.end - args.start <= 900
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S" if short else "%H:%M",
                                                      tz=timezone.utc))
    ax.set_xlim(datetime.fromtimestamp(args.start, timezone.utc),
                datetime.fromtimestamp(args.end, timezone.utc))
    if not series:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "No data", transform=ax.transAxes, ha="center", color=MUTED,
                fontsize=11)
        return
    for i, (name, ts, vs) in enumerate(series):
        ax.plot(ts, vs, color=PALETTE[i % len(PALETTE)], linewidth=1.2)
    lo, hi = ax.get_ylim()
    ax.set_ylim(defaults.get("min", 0 if lo >= 0 else lo), defaults.get("max", hi))
    for i, (name, _ts, vs) in enumerate(series[:nleg]):
        ly = y + h - (nleg - i) * line + 4
        if i == nleg - 1 and len(series) > nleg:
            name = f"... and {len(series) - i} more series"
        else:
            last = next((v for v in reversed(vs) if not math.isnan(v)), None)
            fig.text(*px(x + 2, ly), "\u2014", color=PALETTE[i % len(PALETTE)],
                     weight="bold", va="center")
            if calcs:
                fig.text(*px(x + w - 4, ly), fmt_value(last, unit), va="center", ha="right")
        fig.text(*px(x + 16, ly), name, va="center", fontsize=7.5)


def time_ticks(start, end, most):
    """At most `most` ticks on round times (every 10 s, 15 s, ... 1 d)."""
    for every in (10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400):
        if (end - start) / every <= most:
            break
    first = math.ceil(start / every) * every
    return [datetime.fromtimestamp(t, timezone.utc) for t in range(first, end + 1, every)]


def table(fig, px, body, prom, exprs, end, unit):
    """A table panel of instant queries: one row per series, its labels and value."""
    x, y, w, h = body
    rows = []
    for _t, expr in exprs:
        for r in prom.get("query", query=expr, time=end)["result"]:
            labels = {k: v for k, v in r["metric"].items() if k != "__name__"}
            rows.append({**labels, "Value": fmt_value(float(r["value"][1]), unit)})
    if not rows:
        fig.text(*px(x + w / 2, y + h / 2), "No data", color=MUTED, ha="center", fontsize=11)
        return
    cols = list(dict.fromkeys(k for r in rows for k in r))
    # Columns as wide as their longest cell (a configuration hash is long, a pod name not).
    chars = [max(len(c), *(len(r.get(c, "")) for r in rows)) for c in cols]
    chars = [n + 2 for n in chars]  # a gap between columns
    size = min(7.5, w / sum(chars) / (0.6 * DPI / 72))  # a monospace glyph: 0.6 em
    left = [x + w * sum(chars[:j]) / sum(chars) for j in range(len(cols))]
    for j, c in enumerate(cols):
        fig.text(*px(left[j], y + 8), c, weight="bold", color="#6e9fff", va="center")
    for i, r in enumerate(rows[: int((h - 20) // 16)]):
        for j, c in enumerate(cols):
            fig.text(*px(left[j], y + 26 + i * 16), r.get(c, ""), va="center",
                     family="monospace", fontsize=size)


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--dashboard", required=True)
    a.add_argument("--prometheus", required=True)
    a.add_argument("--start", type=int, required=True)
    a.add_argument("--end", type=int, required=True)
    a.add_argument("--scrape-interval", type=int, default=15)
    a.add_argument("--var", action="append", default=[])
    a.add_argument("--out", required=True)
    draw(a.parse_args())


if __name__ == "__main__":
    main()
