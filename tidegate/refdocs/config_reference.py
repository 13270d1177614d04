"""docs/configuration.md, generated from the pydantic schema of config/app.yml.

The schema (``tidegate.config.schema.AppConfig``) is the one definition of every
key: its type, default, constraints and description. Writing the reference by
hand would let the two drift the first time someone adds a key, so the page is a
pure function of the schema (plus the ``${VAR:-default}`` references found in the
committed config/app.yml), and a test fails when the committed page differs.
"""

from __future__ import annotations

import json
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annotated_types as at
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tidegate.config.schema import AppConfig
from tidegate.durations import format_duration

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


@dataclass(frozen=True)
class KeyRow:
    """One leaf key of the configuration, ready to print."""

    path: str
    type: str
    default: str
    constraints: str
    env: str
    description: str


def _is_duration(field: FieldInfo) -> bool:
    for meta in field.metadata:
        schema = getattr(meta, "json_schema", None)
        if isinstance(schema, dict) and schema.get("format") == "duration":
            return True
    return False


def _is_section(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def render_type(annotation: Any, *, duration: bool = False) -> str:
    """A YAML user's name for a Python annotation: ``"paper" | "real"``, ``number or null``."""
    if duration:
        return "duration"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return " \\| ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        parts = [render_type(a) for a in args if a is not type(None)]
        return " or ".join(parts) + (" or null" if type(None) in args else "")
    if origin in (list, tuple):
        return f"list of {render_type(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {render_type(args[0])} to {render_type(args[1])}" if args else "map"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(annotation, str(annotation))


def render_value(value: Any, *, duration: bool = False) -> str:
    if duration and isinstance(value, int | float):
        return f"`{format_duration(float(value))}`"
    if value is None:
        return "`null`"
    if isinstance(value, bool):
        return f"`{'true' if value else 'false'}`"
    if isinstance(value, str):
        return f'`"{value}"`' if value else '`""`'
    if isinstance(value, list):
        return "`" + json.dumps(value) + "`"
    return f"`{value!r}`"


def render_constraints(field: FieldInfo) -> str:
    out: list[str] = []
    for meta in field.metadata:
        if isinstance(meta, at.Ge):
            out.append(f"≥ {meta.ge}")
        elif isinstance(meta, at.Gt):
            out.append(f"> {meta.gt}")
        elif isinstance(meta, at.Le):
            out.append(f"≤ {meta.le}")
        elif isinstance(meta, at.Lt):
            out.append(f"< {meta.lt}")
        elif isinstance(meta, at.MinLen):
            out.append(f"at least {meta.min_length} item(s)")
        elif isinstance(meta, at.MaxLen):
            out.append(f"at most {meta.max_length} item(s)")
        elif getattr(meta, "pattern", None):
            out.append(f"matches `{meta.pattern}`".replace("|", "\\|"))
    return ", ".join(out)


def _default(field: FieldInfo) -> Any:
    if field.default_factory is not None:
        return field.default_factory()  # type: ignore[call-arg]
    return None if field.default is PydanticUndefined else field.default


def env_references(app_yml: Any, prefix: str = "") -> dict[str, str]:
    """``{"exchange.mode": "EXCHANGE_MODE (default paper)"}`` for every interpolated scalar."""
    out: dict[str, str] = {}
    if isinstance(app_yml, dict):
        for key, value in app_yml.items():
            out.update(env_references(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(app_yml, str):
        refs = [f"`{m.group(1)}`" + (f" (else `{m.group(2)}`)" if m.group(2) is not None else "")
                for m in _ENV.finditer(app_yml)]
        if refs:
            out[prefix] = ", ".join(refs)
    return out


Leaves = list[tuple[str, FieldInfo]]


def walk(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, type[BaseModel], Leaves]]:
    """Sections depth-first: (dotted path, model, its leaf fields); nested sections follow their parent."""
    leaves = [(n, f) for n, f in model.model_fields.items() if not _is_section(f.annotation)]
    yield prefix, model, leaves
    for name, field in model.model_fields.items():
        if _is_section(field.annotation):
            yield from walk(field.annotation, f"{prefix}.{name}" if prefix else name)  # type: ignore[arg-type]


def rows(model: type[BaseModel] = AppConfig, env: dict[str, str] | None = None) -> list[tuple[str, list[KeyRow]]]:
    env = env or {}
    out: list[tuple[str, list[KeyRow]]] = []
    for section, _cls, leaves in walk(model):
        section_rows = []
        for name, field in leaves:
            path = f"{section}.{name}" if section else name
            duration = _is_duration(field)
            section_rows.append(KeyRow(
                path=path, type=render_type(field.annotation, duration=duration),
                default=render_value(_default(field), duration=duration), constraints=render_constraints(field),
                env=env.get(path, ""), description=(field.description or "").replace("|", "\\|")))
        out.append((section, section_rows))
    return out


def _cell(text: str) -> str:
    return text if text else "—"


def render(app_yml_path: Path | None = None) -> str:
    """The whole page. ``app_yml_path`` (config/app.yml) supplies the environment-variable column."""
    import yaml

    env: dict[str, str] = {}
    if app_yml_path is not None and app_yml_path.is_file():
        env = env_references(yaml.safe_load(app_yml_path.read_text()))
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `tidegate docs generate` (scripts/gen_docs.py) from",
        "     tidegate/config/schema.py and config/app.yml. Do not edit by hand. -->",
        "",
        "Every key of `config/app.yml`, as the schema (`tidegate.config.schema.AppConfig`) defines it.",
        "Validate a file with `tidegate config validate --config config/app.yml` (or",
        "`python scripts/validate_config.py --config config/app.yml`): every problem is reported with its",
        "field path and the command exits non-zero. Unknown keys are errors, never silently ignored.",
        "",
        "**Interpolation.** Any scalar may reference the environment: `${VAR}` (VAR must be set),",
        "`${VAR:-default}` (the default when VAR is unset *or empty*), `${VAR-default}` (the default only when",
        "VAR is unset) and `$$` for a literal `$`. A scalar that is exactly one `${...}` is re-read as YAML,",
        "so `${LEVERAGE:-10}` is the number 10. Interpolation runs on parsed values, never on the raw text, so",
        "an environment value cannot inject YAML structure. The *env* column lists the variables the",
        "committed `config/app.yml` reads.",
        "",
        "**Durations** accept a number of seconds (`90`) or `ms`/`s`/`m`/`h`/`d` parts (`30s`, `15m`, `1h30m`).",
        "",
    ]
    for section, section_rows in rows(env=env):
        if not section_rows:
            continue
        depth = section.count(".") + 2 if section else 2
        lines += [f"{'#' * min(depth, 4)} " + (f"`{section}`" if section else "Top-level keys"), ""]
        lines += ["| key | type | default | constraints | env | description |",
                  "|---|---|---|---|---|---|"]
        for r in section_rows:
            lines.append(f"| `{r.path}` | {r.type} | {r.default} | {_cell(r.constraints)} | {_cell(r.env)} "
                         f"| {_cell(r.description)} |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
