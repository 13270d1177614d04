"""docs/compliance.md, the seed compliance table, checked against the code.

Every row names where a seed requirement lives and which tests prove it. The table
is only worth reading if those names are real, so this test parses it and checks:

- every ``where`` path exists, and a ``path::symbol`` is found in that file (a
  definition ``def``/``class``/``symbol =``, or the text itself; ``Class.method``
  needs both the class and the method);
- every ``proved by`` node id is a test file that defines that test (parametrization
  ``[...]`` stripped);
- row numbers are unique, there are at least 150 rows, every status is ``holds``,
  ``partial`` or ``missing``, every ``holds`` row names a test, and every other row
  says why in a few words.

It does not judge whether a row holds: the tests the row names do that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TABLE = REPO / "docs" / "compliance.md"
STATUSES = ("holds", "partial", "missing")
NO_TEST = "—"
MIN_ROWS = 150

CELL_SPLIT = re.compile(r"(?<!\\)\|")
CODE = re.compile(r"`([^`]+)`")
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class Row:
    line: int
    number: str
    says: str
    where: tuple[str, ...]
    proved_by: tuple[str, ...]
    proved_raw: str
    status: str

    def __str__(self) -> str:
        return f"row {self.number} (line {self.line})"


def split_cells(line: str) -> list[str]:
    """The cells of a markdown table line; ``\\|`` is a pipe inside a cell, not a separator."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [c.strip() for c in CELL_SPLIT.split(body)]


def parse_table(text: str) -> tuple[list[Row], list[str]]:
    """Every data row of every table in the page, and the problems met while parsing."""
    rows: list[Row] = []
    problems: list[str] = []
    for i, line in enumerate(text.splitlines(), start=1):
        if not line.lstrip().startswith("|"):
            continue
        cells = split_cells(line)
        if cells and cells[0] == "#":
            if [c.lower() for c in cells] != ["#", "seed says", "where", "proved by", "status"]:
                problems.append(f"line {i}: header must be # | seed says | where | proved by | status, got {cells}")
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue
        if len(cells) != 5:
            problems.append(f"line {i}: {len(cells)} cells, want 5 (escape a pipe in a cell as \\|): {line[:80]}")
            continue
        number, says, where, proved, status = cells
        rows.append(Row(line=i, number=number, says=says, where=tuple(CODE.findall(where)),
                        proved_by=tuple(CODE.findall(proved)), proved_raw=proved, status=status))
    return rows, problems


@cache
def rows_and_problems() -> tuple[list[Row], list[str]]:
    return parse_table(TABLE.read_text(encoding="utf-8"))


def rows() -> list[Row]:
    return rows_and_problems()[0]


@cache
def read(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def defines(text: str, name: str) -> bool:
    """``def name``, ``class name`` or ``name =`` / ``name:`` at the start of a line."""
    pattern = rf"^\s*(?:(?:async\s+)?def|class)\s+{re.escape(name)}\b|^\s*{re.escape(name)}\s*[:=]"
    return re.search(pattern, text, re.MULTILINE) is not None


def symbol_found(text: str, symbol: str) -> bool:
    if symbol in text or defines(text, symbol):
        return True
    parts = symbol.split(".")   # Class.method: both defined in the file
    return len(parts) > 1 and all(IDENT.fullmatch(p) and defines(text, p) for p in parts)


def where_problem(item: str) -> str | None:
    path_text, _, symbol = item.partition("::")
    path = REPO / path_text
    if not path_text or path_text.startswith("/") or ".." in Path(path_text).parts:
        return f"{item!r}: not a repository path"
    if not path.exists():
        return f"{item!r}: {path_text} does not exist"
    if symbol:
        if not path.is_file():
            return f"{item!r}: {path_text} is not a file, so it holds no symbol"
        if not symbol_found(read(path), symbol):
            return f"{item!r}: {symbol!r} not found in {path_text}"
    return None


def node_problem(node: str) -> str | None:
    parts = re.sub(r"\[.*\]$", "", node).split("::")
    if len(parts) < 2 or not parts[0].startswith("tests/") or not parts[0].endswith(".py"):
        return f"{node!r}: not a node id like tests/test_x.py::test_name"
    path = REPO / parts[0]
    if not path.is_file():
        return f"{node!r}: {parts[0]} does not exist"
    text = read(path)
    *classes, test = parts[1:]
    missing = [c for c in classes if not re.search(rf"^\s*class\s+{re.escape(c)}\b", text, re.MULTILINE)]
    if missing:
        return f"{node!r}: class {missing[0]} not in {parts[0]}"
    if not test.startswith("test") or not re.search(rf"^\s*(?:async\s+)?def\s+{re.escape(test)}\s*\(", text,
                                                    re.MULTILINE):
        return f"{node!r}: no `def {test}` in {parts[0]}"
    return None


def report(bad: list[str]) -> str:
    return f"{len(bad)} bad row(s) in {TABLE.relative_to(REPO)}:\n  " + "\n  ".join(bad)


# -- the parser itself ------------------------------------------------------------------------------

def test_parser_reads_escaped_pipes_code_spans_and_dashes() -> None:
    text = ("| # | seed says | where | proved by | status |\n|---|---|---|---|---|\n"
            "| 7 | mode `disabled \\| canary \\| full` | `a.py::f`, `b/` | `tests/t.py::test_x[1]`, "
            "`tests/t.py::test_y` | holds |\n"
            f"| 8 | x | `c.py` | {NO_TEST} | partial: no test yet |\n")
    parsed, problems = parse_table(text)
    assert problems == []
    assert [r.number for r in parsed] == ["7", "8"]
    assert parsed[0].says == "mode `disabled \\| canary \\| full`"
    assert parsed[0].where == ("a.py::f", "b/")
    assert parsed[0].proved_by == ("tests/t.py::test_x[1]", "tests/t.py::test_y")
    assert parsed[1].proved_by == () and parsed[1].proved_raw == NO_TEST and parsed[1].status == "partial: no test yet"
    _, problems = parse_table("| 9 | a | b | c |\n")
    assert problems and "4 cells" in problems[0]


def test_the_checks_reject_what_does_not_exist() -> None:
    assert where_problem("tidegate/execution/sizing.py::compute_order_qty") is None
    assert where_problem("tidegate/registry/store.py::Registry.register") is None
    assert "not found" in (where_problem("tidegate/execution/sizing.py::no_such_function") or "")
    assert "does not exist" in (where_problem("tidegate/no_such_module.py") or "")
    assert node_problem("tests/test_sizing.py::test_rejects_nonsense") is None
    assert node_problem("tests/test_alerts.py::test_unit_tests_catch_a_broken_alert[always-fires-WinRateDrop]") is None
    assert "no `def" in (node_problem("tests/test_sizing.py::test_that_was_never_written") or "")
    assert "does not exist" in (node_problem("tests/test_nothing_here.py::test_x") or "")


# -- the table ----------------------------------------------------------------------------------------

def test_table_parses_into_enough_uniquely_numbered_rows() -> None:
    parsed, problems = rows_and_problems()
    bad = list(problems)
    seen: dict[str, Row] = {}
    for r in parsed:
        if not r.number.isdigit():
            bad.append(f"{r}: row number {r.number!r} is not a number")
        elif r.number in seen:
            bad.append(f"{r}: duplicate row number (also {seen[r.number]})")
        else:
            seen[r.number] = r
        if not r.says:
            bad.append(f"{r}: empty 'seed says'")
    assert not bad, report(bad)
    assert len(parsed) >= MIN_ROWS, f"{TABLE.name} has {len(parsed)} rows, want at least {MIN_ROWS}"


def test_every_where_path_and_symbol_exists() -> None:
    bad = []
    for r in rows():
        if not r.where:
            bad.append(f"{r}: no `path` in 'where'")
        bad += [f"{r}: {p}" for item in r.where if (p := where_problem(item))]
    assert not bad, report(bad)


def test_every_named_test_exists() -> None:
    bad = []
    for r in rows():
        if not r.proved_by and r.proved_raw != NO_TEST:
            bad.append(f"{r}: 'proved by' must name tests in backticks or be {NO_TEST}, got {r.proved_raw!r}")
        bad += [f"{r}: {p}" for node in r.proved_by if (p := node_problem(node))]
    assert not bad, report(bad)


def test_statuses_are_known_and_holds_names_a_test() -> None:
    bad = []
    for r in rows():
        word = re.split(r"[\s:(]", r.status, maxsplit=1)[0].lower()
        if word not in STATUSES:
            bad.append(f"{r}: status {r.status!r} must start with one of {STATUSES}")
        elif word == "holds" and not r.proved_by:
            bad.append(f"{r}: 'holds' but no test named in 'proved by'")
        elif word != "holds" and len(r.status.split()) < 3:
            bad.append(f"{r}: {word!r} needs a few words on what is missing, got {r.status!r}")
    assert not bad, report(bad)

