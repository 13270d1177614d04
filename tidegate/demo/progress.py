"""The live terminal view of a release: stage, weight, every gate against its threshold, decisions.

On a terminal it is a rich Live panel redrawn every tick; elsewhere (CI, a pipe,
the test suite) it prints one line per decision and a status line per stage, so
the same run reads well in a log.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from tidegate.release.spec import DecisionRecord, ModelRelease, ReleaseStatus
from tidegate.release.verdicts import GateVerdict

_COLOURS = {"PASS": "green", "FAIL": "red", "INSUFFICIENT": "yellow", "UNAVAILABLE": "magenta"}


def _fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def gate_table(verdicts: Sequence[GateVerdict]) -> Table:
    table = Table(expand=True, show_edge=False, pad_edge=False)
    for col in ("gate", "verdict", "value", "threshold", "n", "why"):
        table.add_column(col, overflow="fold", ratio=4 if col == "why" else 1)
    for v in verdicts:
        verdict = str(v.verdict)
        table.add_row(v.gate, Text(verdict, style=_COLOURS.get(verdict, "")), _fmt(v.value), _fmt(v.threshold),
                      "-" if v.sample is None else f"{v.sample:.0f}", v.reason)
    return table


def decision_line(d: DecisionRecord) -> str:
    at = d.at[11:19] if len(d.at) >= 19 else d.at
    gate = f" [{d.gate} {d.verdict}]" if d.gate else ""
    return f"{at} {d.stage or '-':8s} {d.action:9s}{gate} {d.reason}"


class ProgressView:
    def __init__(self, console: Console, release: ModelRelease, *, inject: str | None, live: bool):
        self.console = console
        self.release = release
        self.inject = inject
        self.live = live
        self._printed = 0
        self._last_stage: tuple[str, str] | None = None
        self.notes: list[str] = []

    def note(self, text: str) -> None:
        """Something the demo did (an injected fault, a restarted process): shown and logged."""
        self.notes.append(text)
        if not self.live:
            self.console.print(f"[bold cyan]>> {text}[/]")

    def render(self, status: ReleaseStatus | None, verdicts: Sequence[GateVerdict], extra: str = "") -> Group:
        st = status or ReleaseStatus()
        stages = self.release.spec.stages
        idx = st.stageIndex
        spec_stage = stages[idx] if 0 <= idx < len(stages) else None
        elapsed = ""
        if st.stageStartedAt:
            secs = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(st.stageStartedAt)).total_seconds()
            need = f" / {spec_stage.duration:g}s" if spec_stage and spec_stage.duration else ""
            elapsed = f"   in stage {secs:4.0f}s{need}"
        head = Text.assemble(("phase ", "dim"), (st.phase, "bold"), ("   stage ", "dim"),
                             (f"{st.stage or '-'} ({idx + 1}/{len(stages)})", "bold"), ("   weight ", "dim"),
                             (f"{st.weight}%", "bold"), elapsed)
        decisions = Text("\n".join(decision_line(d) for d in st.decisions[-8:]) or "(none yet)")
        parts = [head, gate_table(verdicts), Text("decisions", style="dim"), decisions]
        if self.notes:
            parts.append(Text("\n".join(f">> {n}" for n in self.notes[-3:]), style="cyan"))
        if extra:
            parts.append(Text(extra, style="dim"))
        return Group(Panel(Group(*parts), title=f"release {self.release.name}: {self.release.spec.modelId}"
                                                f"{'  [inject: ' + self.inject + ']' if self.inject else ''}"))

    def log_lines(self, status: ReleaseStatus | None, verdicts: Sequence[GateVerdict]) -> None:
        """Plain output: new decisions, and a status line whenever stage or phase changes."""
        if status is None:
            return
        for d in status.decisions[self._printed:]:
            self.console.print(decision_line(d), highlight=False)
        self._printed = len(status.decisions)
        key = (status.phase, status.stage)
        if key != self._last_stage:
            self._last_stage = key
            gates = "  ".join(f"{v.gate}={v.verdict}({_fmt(v.value)}/{_fmt(v.threshold)})" for v in verdicts)
            self.console.print(f"-- phase {status.phase} stage {status.stage or '-'} weight {status.weight}%"
                               f"{'  ' + gates if gates else ''}", highlight=False)
