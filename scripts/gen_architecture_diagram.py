#!/usr/bin/env python3
"""Draw docs/architecture.png: the components of tidegate and how data and decisions flow.

A PNG generated from code (matplotlib, no network, no diagram service) so it is
viewable everywhere, including a ticket system or a GitHub mirror without
mermaid, and so it can be regenerated when a component changes:

    python scripts/gen_architecture_diagram.py [--out docs/architecture.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

SERVICE = "#e3f2fd"
INFRA = "#fff8e1"
ENGINE = "#e8f5e9"
STORE = "#f3e5f5"
EXTERNAL = "#eceff1"


def box(ax: Axes, x: float, y: float, w: float, h: float, title: str, body: str = "", color: str = SERVICE,
        ) -> tuple[float, float, float, float]:
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.12", fc=color, ec="#37474f",
                                lw=1.3))
    ax.text(x + w / 2, y + h - 0.22, title, ha="center", va="top", fontsize=10.5, weight="bold")
    if body:
        ax.text(x + w / 2, y + h - 0.55, body, ha="center", va="top", fontsize=8, color="#37474f", linespacing=1.3)
    return x, y, w, h


def arrow(ax: Axes, a: tuple[float, float], b: tuple[float, float], label: str = "", color: str = "#37474f",
          style: str = "-|>", ls: str = "-", rad: float = 0.0, offset: tuple[float, float] = (0, 0.12)) -> None:
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=13, color=color, lw=1.4, ls=ls, zorder=4,
                                 connectionstyle=f"arc3,rad={rad}"))
    if label:
        ax.text((a[0] + b[0]) / 2 + offset[0], (a[1] + b[1]) / 2 + offset[1], label, ha="center", va="bottom",
                fontsize=7.5, color=color, bbox={"fc": "white", "ec": "none", "alpha": 0.85, "pad": 0.5})


def draw(out: Path) -> None:
    fig, ax = plt.subplots(figsize=(15, 9.2))
    ax.set_xlim(0, 15)
    ax.set_ylim(0, 9.2)
    ax.axis("off")

    # market data and the trading path
    box(ax, 0.2, 7.3, 2.3, 1.4, "market data", "capture replay | synthetic\n| ccxt live", EXTERNAL)
    top = 5.6
    cx = {"collector": 0.3, "signal_engine": 3.1, "ai_scorer": 5.9, "executor": 8.7, "risk": 11.6}
    bodies = {"collector": "book rebuild,\nmd.* publisher",
              "signal_engine": "features (one module\nfor train + serve)",
              "ai_scorer": "ONNX Runtime: active\n+ shadow, thresholds,\nparity re-scores",
              "executor": "route = H(seed, id)\nsizing, gates, ladder",
              "risk": "win rate, fill rate,\nmarkouts, PSI/KS, ECE\n(+ counters)"}
    for name, x in cx.items():
        box(ax, x, top, 2.4, 1.45, name, bodies[name], SERVICE)
    box(ax, 8.7, 7.65, 3.4, 1.2, "paper simulator | venue", "queue + latency models | ccxt bybit v5\n"
                                                             "(EXCHANGE_MODE=real)", EXTERNAL)
    arrow(ax, (1.35, 7.3), (1.45, top + 1.45), "ticks")
    arrow(ax, (10.0, top + 1.45), (10.0, 7.65), "orders")
    arrow(ax, (10.9, 7.65), (10.9, top + 1.45), "fills")

    # the bus
    bus_y = 3.9
    ax.add_patch(FancyBboxPatch((0.2, bus_y), 14.2, 0.9, boxstyle="round,pad=0.02,rounding_size=0.1", fc=INFRA,
                                ec="#f9a825", lw=1.6))
    ax.text(7.3, bus_y + 0.62, "NATS", ha="center", va="center", fontsize=11, weight="bold")
    ax.text(7.3, bus_y + 0.25, "core: md.*  sig.candidates  sig.approved    JetStream: orders, fills, control.events"
                               " (MODE_SWITCH, CRIT)    KV: rollout state (mode, fraction, model ids, thresholds)",
            ha="center", va="center", fontsize=8)
    pubsub = [("collector", "md.*", "pub"), ("signal_engine", "md.* → sig.candidates", "both"),
              ("ai_scorer", "candidates → approved", "both"), ("executor", "approved → orders/fills", "both"),
              ("risk", "fills, shadow", "sub")]
    for name, label, kind in pubsub:
        x = cx[name]
        if kind in ("pub", "both"):
            arrow(ax, (x + 0.8, top), (x + 0.8, bus_y + 0.9), color="#1565c0")
        if kind in ("sub", "both"):
            arrow(ax, (x + 1.6, bus_y + 0.9), (x + 1.6, top), color="#1565c0")
        ax.text(x + 1.2, (top + bus_y + 0.9) / 2, label, ha="center", va="center", fontsize=7, color="#1565c0",
                bbox={"fc": "white", "ec": "none", "alpha": 0.9, "pad": 0.4})

    # observability and the release engine
    box(ax, 11.4, 1.75, 2.9, 1.4, "Prometheus", "scrapes every /metrics;\nguard-rail PromQL,\nalerts, Grafana",
        INFRA)
    arrow(ax, (13.8, top), (13.8, 3.15), "/metrics\n(every service)", color="#6a1b9a", offset=(0.0, -0.95))
    box(ax, 5.4, 0.3, 5.0, 2.35, "release engine (pure decide())",
        "shadow → canary → ramp → full; PASS / FAIL /\nINSUFFICIENT / UNAVAILABLE gates; rollback,\n"
        "cooldown, threshold freeze, decision log\n\none engine, two drivers:\n"
        "kopf operator (CR status) | local driver (state dir)", ENGINE)
    arrow(ax, (11.4, 2.3), (10.4, 1.9), "guard-rail\nqueries", color="#6a1b9a", offset=(0, 0.1))
    box(ax, 0.3, 0.45, 2.5, 1.5, "ModelRelease", "CR (kubectl apply, Argo CD)\nor the same YAML\n"
                                                 "(tidegate release run)", EXTERNAL)
    arrow(ax, (2.8, 1.2), (5.4, 1.35), "spec")
    box(ax, 2.3, 2.25, 2.6, 1.35, "model registry", "<id>/model.onnx + model.json\nactive / shadow slots\n"
                                                    "manifest.json", STORE)
    arrow(ax, (5.9, 2.3), (4.9, 2.7), "slots,\nrecord", color="#2e7d32", offset=(0.05, -0.05))
    arrow(ax, (4.3, 3.6), (6.6, top), color="#455a64", ls="--", rad=-0.15)
    ax.text(3.65, 3.72, "ai_scorer loads models", ha="center", fontsize=7.5, color="#455a64")
    arrow(ax, (8.0, 2.65), (8.0, bus_y), "KV rollout state +\nMODE_SWITCH event", color="#2e7d32",
          offset=(0.95, -0.25))
    ax.text(7.5, 9.0, "tidegate: data path (top), bus (middle), release control loop (bottom)", ha="center",
            fontsize=12, weight="bold")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight", facecolor="white")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs" / "architecture.png")
    args = ap.parse_args()
    draw(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
