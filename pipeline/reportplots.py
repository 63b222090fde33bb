"""The figures of ``webtext report``.

Each helper builds one matplotlib figure from a section of ``collect_report``'s dict and
returns an ``<img>`` with the PNG embedded (base64) and an ``alt`` text that says what the
plot shows and its main numbers, for a reader who cannot see it. Every axis carries a
label with its unit: ``png`` refuses a figure with an unlabelled x or y axis.
"""

from __future__ import annotations

import base64
import html
import io
import math

import numpy as np

COLOR = "#4c72b0"
SOURCE_COLORS = {"live": "#4c72b0", "commoncrawl": "#dd8452", "wayback": "#55a868"}


def figure(w: float = 6, h: float = 3, nrows: int = 1, ncols: int = 1):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(nrows, ncols, figsize=(w, h), squeeze=False)


def unlabelled(fig) -> list[str]:
    """The axes of ``fig`` (by title) whose x or y label is empty."""
    return [ax.get_title() or "untitled" for ax in fig.axes if not (ax.get_xlabel() and ax.get_ylabel())]


def png(fig, alt: str) -> str:
    import matplotlib.pyplot as plt

    if missing := unlabelled(fig):
        plt.close(fig)
        raise ValueError(f"report plot without an axis label: {missing}")
    if not alt.strip():
        plt.close(fig)
        raise ValueError("report plot without alt text")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    data = base64.b64encode(buf.getvalue()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def listing(pairs, n: int = 8, sep: str = " ") -> str:
    """``a 12, b 3, c 1`` (the first ``n``, then how many more)."""
    pairs = list(pairs)
    text = ", ".join(f"{k}{sep}{v:,}" for k, v in pairs[:n])
    return text + (f" and {len(pairs) - n} more" if len(pairs) > n else "")


def bars(pairs, title: str, count: str, category: str, horizontal: bool = True) -> str:
    """Bars of ``(category, count)`` pairs; ``count`` and ``category`` name the axes, with
    their units (e.g. "URLs", "registered domain")."""
    if not pairs:
        return ""
    fig, ((ax,),) = figure(6, max(2, 0.28 * len(pairs)) if horizontal else 3)
    labels, values = [str(p[0]) for p in pairs], [p[1] for p in pairs]
    if horizontal:
        ax.barh(labels[::-1], values[::-1], color=COLOR)
        ax.set_xlabel(count)
        ax.set_ylabel(category)
    else:
        ax.bar(labels, values, color=COLOR)
        ax.tick_params(axis="x", rotation=45)
        ax.set_xlabel(category)
        ax.set_ylabel(count)
    ax.set_title(title)
    return png(fig, f"Bar chart of {title} ({count} by {category}): {listing(pairs, sep=': ')}")


def histogram(h: dict, title: str, xlabel: str, ylabel: str, log: bool = True) -> str:
    if not h.get("counts"):
        return ""
    fig, ((ax,),) = figure()
    e = h["edges"]
    ax.bar(e[:-1], h["counts"], width=np.diff(e), align="edge", color="#55a868", edgecolor="white")
    if log:
        ax.set_xscale("log")
    ax.set_title(f"{title} (median {h['median']:,.0f}, p90 {h['p90']:,.0f})")
    ax.set_xlabel(xlabel + (", log scale" if log else ""))
    ax.set_ylabel(ylabel)
    return png(fig, f"Histogram of {title} over {h['n']:,} {ylabel}, x axis {xlabel}: median {h['median']:,.0f}, "
                    f"p90 {h['p90']:,.0f}, from {e[0]:,.0f} to {e[-1]:,.0f}")


def recovery(rec: dict) -> str:
    """Stacked bars: documents per year of submission, live vs each archive."""
    if not rec or not rec["by_year"]:
        return ""
    fig, ((ax,),) = figure(6, 3)
    years = [str(r["year"]) for r in rec["by_year"]]
    bottom = np.zeros(len(years))
    for s in rec["sources"]:
        v = np.array([r[s] for r in rec["by_year"]], dtype=float)
        ax.bar(years, v, bottom=bottom, label=s, color=SOURCE_COLORS.get(s))
        bottom += v
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    ax.set_xlabel("year of submission (UTC)")
    ax.set_ylabel("documents")
    ax.set_title(f"documents by year of submission and source ({rec['recovered_share']:.1%} recovered from archives)")
    return png(fig, f"Stacked bar chart of documents per year of submission ({years[0]} to {years[-1]}) by source: "
                    f"{listing(rec['total'].items())}; {rec['recovered_share']:.1%} recovered from web archives")


def funnel(stages: list[dict]) -> str:
    """One panel per stage, records in and out, each axis in the stage's own units: the
    stages count different things (submissions, URLs, pages, documents)."""
    if not stages:
        return ""
    ncols = min(3, len(stages))
    nrows = math.ceil(len(stages) / ncols)
    fig, axes = figure(3.2 * ncols, 2.8 * nrows, nrows, ncols)
    flat = axes.ravel()
    for ax, s in zip(flat, stages):
        ax.bar([0, 1], [s["in"], s["out"]], color=["#8c8c8c", COLOR])
        ax.set_xticks([0, 1], [f"in\n{s['unit_in']}", f"out\n{s['unit_out']}"])
        ax.bar_label(ax.containers[0], fmt="{:,.0f}")
        ax.set_ylim(0, max(s["in"], s["out"], 1) * 1.18)
        ax.set_title(s["stage"])
        ax.set_xlabel("records in and out")
        ax.set_ylabel(s["unit_in"] if s["unit_in"] == s["unit_out"] else f"{s['unit_in']} in, {s['unit_out']} out")
    for ax in flat[len(stages):]:
        fig.delaxes(ax)
    fig.tight_layout()
    steps = "; ".join(f"{s['stage']}: {s['in']:,} {s['unit_in']} in, {s['out']:,} {s['unit_out']} out"
                      for s in stages)
    return png(fig, f"Funnel, one bar chart per stage of the records in and out, each in its own unit: {steps}")


def drops(s: dict) -> str:
    """A stage's drops by reason, counted in the records it takes in."""
    from matplotlib.ticker import MaxNLocator

    pairs = sorted(s["dropped"].items(), key=lambda kv: (-kv[1], kv[0]))
    if not pairs:
        return ""
    fig, ((ax,),) = figure(6, max(1.6, 0.3 * len(pairs) + 0.8))
    ax.barh([k for k, _ in pairs][::-1], [v for _, v in pairs][::-1], color="#c44e52")
    ax.bar_label(ax.containers[0], fmt="{:,.0f}", padding=2)
    ax.set_xlim(0, pairs[0][1] * 1.15)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    unit, total = s["unit_in"], sum(v for _, v in pairs)
    ax.set_title(f"{s['stage']}: {total:,} {unit} dropped")
    ax.set_xlabel(f"{unit} dropped")
    ax.set_ylabel("reason")
    return png(fig, f"Bar chart of {unit} dropped by reason in {s['stage']}: {listing(pairs, 20)}")


def _steps(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def training(name: str, c: dict) -> str:
    """Loss and validation loss, tokens/s, and MFU (or why there is none) of one run."""
    out = ""
    if c["loss"] or c["val_loss"]:
        fig, ((ax,),) = figure()
        for k, style in (("loss", "-"), ("val_loss", "o-")):
            if c[k]:
                ax.plot(*zip(*c[k]), style, label=k)
        ax.set_title(f"run {name}: loss")
        _steps(ax)
        ax.set_ylabel("cross-entropy loss (nats/token)")
        ax.legend()
        last = {k: c[k][-1] for k in ("loss", "val_loss") if c[k]}
        out += png(fig, f"Line chart of the training loss{' and validation loss' if c['val_loss'] else ''} "
                        f"by step for run {name}: " + ", ".join(f"{k} {v:.3f} at step {s:,}"
                                                                for k, (s, v) in last.items()))
    if c["tokens_per_s"]:
        fig, ((ax,),) = figure(6, 2.5)
        ax.plot(*zip(*c["tokens_per_s"]))
        ax.set_title(f"run {name}: throughput")
        _steps(ax)
        ax.set_ylabel("tokens/s")
        step, v = c["tokens_per_s"][-1]
        out += png(fig, f"Line chart of the training throughput in tokens per second by step for run {name}: "
                        f"{v:,.0f} tokens/s at step {step:,}")
    mfu = [[s, v] for s, v in c["mfu"] if v]
    if mfu:
        fig, ((ax,),) = figure(6, 2.5)
        ax.plot([s for s, _ in mfu], [100 * v for _, v in mfu], color="#8172b2")
        ax.set_title(f"run {name}: model FLOPs utilization")
        _steps(ax)
        ax.set_ylabel("MFU (% of peak FLOP/s)")
        ax.set_ylim(bottom=0)
        step, v = mfu[-1]
        out += png(fig, f"Line chart of the model FLOPs utilization (MFU) by step for run {name}: "
                        f"{v:.1%} at step {step:,}")
    elif c.get("mfu_absent"):
        out += f'<p class="absent">{html.escape(c["mfu_absent"])}</p>'
    return out
