"""How a problem found before Ray starts is worded: one line naming the key, what is wrong and what is
allowed. Every check of the package (YAML file, RLlib settings, our pydantic models, stop criteria,
pre-flight) words its problems with these helpers, so a user reads one style."""

from __future__ import annotations

import difflib
import math
import re
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

# A value shown in a message is cut to this many characters: a YAML file can hold huge values.
MAX_SHOWN = 120
# An error message shows this many problems (a generated file can hold thousands), and suggestions
# ("did you mean") are looked for in as many unknown keys.
MAX_PROBLEMS_SHOWN = 50
# An unknown key's message lists the allowed keys when there are at most this many.
MAX_LISTED = 20
_TYPE_NAMES = {"int", "float", "str", "bool", "list", "dict", "tuple", "none", "nullable"}


class ExperimentError(ValueError):
    """A tuned_examples file (or option) that cannot run; ``problems`` holds one line per bad key.

    Its message shows the first :data:`MAX_PROBLEMS_SHOWN` lines and counts the rest."""

    def __init__(self, source: str, problems: list[str]):
        self.source = source
        self.problems = problems
        shown_lines = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > len(shown_lines):
            shown_lines.append(f"... and {len(problems) - len(shown_lines)} more problems")
        super().__init__(f"{source}:\n  " + "\n  ".join(shown_lines))


def shown(value: Any) -> str:
    """``repr(value)``, cut to :data:`MAX_SHOWN` characters."""
    text = repr(value)
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 15] + f"... ({len(text)} chars)"


def suggest(word: str, options: Iterable[str]) -> str:
    """`` (did you mean: a, b?)`` for the options that look like ``word``, or ""."""
    close = difflib.get_close_matches(word, list(options), n=3, cutoff=0.6)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


_EXPONENT = re.compile(r"([+-]?)(\d*\.?\d*)[eE]([+-]?)(\d+)")


def string_number_hint(value: Any, *, integer: bool = False) -> str:
    """A hint for a number that arrived as a string, or "".

    YAML 1.1 (PyYAML) reads ``1e-3`` and ``1.0e3`` as strings: a float needs a dot and a signed
    exponent. The hint shows what to write instead: ``" (YAML reads 1e-3 as a string; write 1.0e-3)"``.
    """
    if not isinstance(value, str):
        return ""
    text = value.strip()
    try:
        number = float(text)
    except ValueError:
        return ""
    if not math.isfinite(number):
        return ""
    match = _EXPONENT.fullmatch(text)
    if integer and number.is_integer():
        fix = str(int(number))
    elif match:
        sign, mantissa, exp_sign, digits = match.groups()
        if "." not in mantissa:
            mantissa += ".0"
        fix = f"{sign}{mantissa}e{exp_sign or '+'}{digits}"
    else:
        fix = text
    if fix == text:
        fix += " without quotes"
    return f" (YAML reads {text} as a string; write {fix})"


def _strings_in(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list | tuple):
        return [s for item in value for s in _strings_in(item)]
    return []


def value_hint(value: Any, *, integer: bool = False) -> str:
    """:func:`string_number_hint` of ``value`` or of the first string inside it that reads as a number."""
    return next((h for h in (string_number_hint(s, integer=integer) for s in _strings_in(value)) if h), "")


# pydantic's wording of a failed constraint -> ours ("must be ..."), by error type.
_MUST = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "int_type": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "finite_number": "must be a finite number",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
}


def _is_branch(part: Any) -> bool:
    """Whether a part of a pydantic error location names a branch of a union (``float``,
    ``constrained-int``, ``list[int]``) rather than a key or an index."""
    return isinstance(part, str) and ("[" in part or "-" in part or part in _TYPE_NAMES)


def _fields_at(model: type[BaseModel], loc: list[str]) -> list[str]:
    """The field names of the (nested) model that holds the key at ``loc``."""
    for part in loc[:-1]:
        field = model.model_fields.get(part)
        inner = [t for t in (field.annotation, *typing.get_args(field.annotation)) if field is not None]
        nested = [t for t in inner if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def pydantic_problems(
    err: ValidationError, where: str, model: type[BaseModel], names: Mapping[str, str] | None = None
) -> list[str]:
    """One ``where.key: problem (got value)`` line per bad key of ``model``, a pydantic model of our
    settings. ``names`` renames a field to the key the user wrote for it (``lambda_`` -> ``lambda``)."""
    lines, seen = [], set()
    for e in err.errors():
        # Union branches are left out of the key; the first part and an unknown key itself are the
        # user's words, whatever they look like.
        parts, last = list(e["loc"]), len(e["loc"]) - 1
        keep = [
            i == 0 or (i == last and e["type"] == "extra_forbidden") or not _is_branch(p)
            for i, p in enumerate(parts)
        ]
        loc = [str(p) for p, k in zip(parts, keep, strict=True) if k]
        if loc and names:
            loc[0] = names.get(loc[0], loc[0])
        key = ".".join(p for p in (where, *loc) if p)
        if key in seen:  # a union reports each of its branches: the first says enough
            continue
        seen.add(key)
        kind, ctx, value = e["type"], e.get("ctx", {}), e.get("input")
        if kind == "extra_forbidden":
            allowed = _fields_at(model, loc)
            listed = f"; allowed keys: {', '.join(allowed)}" if len(allowed) <= MAX_LISTED else ""
            hint = suggest(loc[-1], allowed) if len(lines) < MAX_PROBLEMS_SHOWN else ""
            lines.append(f"{key}: unknown key{hint}{listed}")
        elif kind == "value_error":
            # Our validators' messages already show the value; pydantic's "Value error, " would repeat it.
            lines.append(f"{key}: {ctx['error']}")
        else:
            if kind == "literal_error":
                message = "must be one of: " + ctx["expected"].replace("' or '", "', '").replace("'", "")
            else:
                message = _MUST[kind].format(**ctx) if kind in _MUST else e["msg"]
            hint = value_hint(value, integer=kind.startswith("int"))
            lines.append(f"{key}: {message} (got {shown(value)}){hint}")
    return lines
