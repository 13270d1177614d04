"""Load ``config/app.yml``: YAML, then ``${VAR:-default}`` interpolation, then the schema.

Interpolation runs on parsed scalars, not on the raw text, so an environment value
can never inject YAML structure. A scalar that is exactly one ``${...}`` is re-read
as a YAML scalar, so ``${LEVERAGE:-10}`` yields the number 10.

Every problem is collected before failing: an operator fixing a config file wants
the whole list at once, each with its field path, not one error per run.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tidegate.config.schema import AppConfig

_VAR = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*))?\}")


@dataclass(frozen=True)
class ConfigProblem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(ValueError):
    """All problems found in one configuration document."""

    def __init__(self, source: str, problems: list[ConfigProblem]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> None:
    """Overlay ``over`` onto a config document in place: nested mappings merge, anything else replaces."""
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value


def _join(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def interpolate(node: Any, env: Mapping[str, str], problems: list[ConfigProblem],
                path: tuple[str | int, ...] = ()) -> Any:
    """Return ``node`` with ``${VAR}``, ``${VAR:-default}`` and ``${VAR-default}`` resolved."""
    if isinstance(node, dict):
        return {k: interpolate(v, env, problems, (*path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env, problems, (*path, i)) for i, v in enumerate(node)]
    if not isinstance(node, str) or "$" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, default = match.group(1), match.group(2), match.group(3)
        value = env.get(name)
        if op == ":-" and not value:
            return default or ""
        if op == "-" and value is None:
            return default or ""
        if value is None:
            problems.append(ConfigProblem(_join(path), f"environment variable {name} is not set "
                                                        "and has no default (write ${" + name + ":-value})"))
            return ""
        return value

    whole = _VAR.fullmatch(node) is not None and node != "$$"
    text = _VAR.sub(substitute, node)
    if whole:
        try:
            return yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            return text
    return text


def _pydantic_problems(exc: ValidationError) -> list[ConfigProblem]:
    out = []
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (not in the schema; check the spelling)"
        elif "input" in err and err["type"] not in ("missing",):
            msg = f"{msg} (got {err['input']!r})"
        out.append(ConfigProblem(_join(loc), msg))
    return out


def parse_config(document: Any, *, source: str = "<config>",
                 env: Mapping[str, str] | None = None) -> AppConfig:
    """Validate an already-parsed YAML document; raise ConfigError listing every problem."""
    problems: list[ConfigProblem] = []
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(source, [ConfigProblem("", "top level must be a mapping of sections")])
    resolved = interpolate(document, os.environ if env is None else env, problems)
    try:
        config = AppConfig.model_validate(resolved)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(exc))
        config = None
    if problems or config is None:
        raise ConfigError(source, problems)
    return config


def load_config(path: str | Path, *, env: Mapping[str, str] | None = None) -> AppConfig:
    """Read and validate a config file; raise ConfigError (file, YAML or schema problems)."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(str(p), [ConfigProblem("", f"cannot read file: {exc.strerror}")]) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(str(p), [ConfigProblem("", f"{where}invalid YAML: "
                                                     f"{getattr(exc, 'problem', exc)}")]) from None
    return parse_config(document, source=str(p), env=env)


def validate_config_file(path: str | Path, *, env: Mapping[str, str] | None = None) -> list[ConfigProblem]:
    """Every problem in the file, or an empty list when it is valid."""
    try:
        load_config(path, env=env)
    except ConfigError as exc:
        return exc.problems
    return []


def load_config_or_exit(path: Path) -> AppConfig:
    """For commands: the config, or its error on stderr and exit 2 (the CLIs' "bad input" code)."""
    import sys

    import click

    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(2)
