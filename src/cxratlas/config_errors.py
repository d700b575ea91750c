"""Config errors told in a few lines each: the key, what is wrong with it, the layer it came from,
the nearest valid key or value, the allowed values. Never the schema: jsonschema's own report
(what `snakemake.utils.validate` prints) dumps the whole failing subschema and instance, 150
lines for one misspelt key."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence

Source = Callable[[Sequence[str | int]], str | None]  # a key's path -> the file that set it
MAX_SHOWN = 6  # errors told in full; the rest are counted


def error_text(errors, source: Source | None = None) -> str:
    """The message for jsonschema `errors`: a line per problem (two with the allowed keys or
    values), sorted by key."""
    blocks = sorted({_block(e, source) for e in errors})
    shown = blocks[:MAX_SHOWN]
    more = len(blocks) - len(shown)
    head = "invalid config" + (f" ({len(blocks)} problems)" if len(blocks) > 1 else "") + ":"
    tail = [f"  ... and {more} more"] if more else []
    return "\n".join([head, *shown, *tail])


def closest(word: str, choices: Sequence[str]) -> str | None:
    """The choice nearest to `word` as difflib ranks them, if any is near (a typo, a case
    slip); None otherwise."""
    folded = {str(c).lower(): str(c) for c in choices}
    near = difflib.get_close_matches(str(word).lower(), list(folded), n=1, cutoff=0.7)
    return folded[near[0]] if near else None


def dotted(path: Sequence[str | int]) -> str:
    """`datasets[0].keep_columns` from ('datasets', 0, 'keep_columns')."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"


def _block(error, source: Source | None) -> str:
    path = list(error.absolute_path)
    how = _KINDS.get(error.validator, _other)
    if "propertyNames" in error.absolute_schema_path:
        how = _name
    return how(error, path, source)


def _where(path, source: Source | None) -> str:
    layer = source(path) if source else None
    return f" (in {layer})" if layer else ""


def _unknown(error, path, source) -> str:
    """additionalProperties: each unexpected key, the nearest allowed one, all allowed ones."""
    allowed = list(error.schema.get("properties", {}))
    extra = [k for k in error.instance if k not in allowed]
    kind = error.schema.get("properties", {}).get("kind", {}).get("const")
    here = f"a {kind!r} model" if kind else dotted(path)
    lines = []
    for key in extra:
        near = closest(key, allowed)
        hint = f"; did you mean {near!r}?" if near else ""
        lines.append(f"  {dotted([*path, key])}: unknown key{_where([*path, key], source)}{hint}")
    lines.append(f"    keys allowed in {here}: {', '.join(allowed)}")
    return "\n".join(lines)


def _enum(error, path, source) -> str:
    allowed = [str(v) for v in error.validator_value]
    near = closest(str(error.instance), allowed) if isinstance(error.instance, str) else None
    hint = f"; did you mean {near!r}?" if near else ""
    return (
        f"  {dotted(path)}: {_short(error.instance)} is not allowed{_where(path, source)}{hint}\n"
        f"    allowed values: {', '.join(allowed)}"
    )


def _type(error, path, source) -> str:
    wanted = _describe({"type": error.validator_value})
    return f"  {dotted(path)}: {_short(error.instance)} is not {wanted}{_where(path, source)}"


def _required(error, path, source) -> str:
    # one error per missing key; the schema's list names them all, the instance has the others
    missing = [k for k in error.validator_value if k not in error.instance]
    keys = ", ".join(map(repr, missing))
    return f"  {dotted(path)}: required key(s) missing: {keys}{_where(path, source)}"


def _alternatives(error, path, source) -> str:
    """oneOf / anyOf: what each alternative takes."""
    options = " | ".join(_describe(s) for s in error.validator_value)
    return (
        f"  {dotted(path)}: {_short(error.instance)} is not allowed{_where(path, source)}\n"
        f"    expected one of: {options}"
    )


def _name(error, path, source) -> str:
    """propertyNames: a key of a free-form mapping (a model's name) that breaks its pattern."""
    why = error.schema.get("description")
    key = [*path, error.instance]
    return (
        f"  {dotted(key)}: the name {_short(error.instance)} does not match "
        f"{error.validator_value}{_where(key, source)}" + (f": {why}" if why else "")
    )


def _other(error, path, source) -> str:
    """Bounds, patterns, lengths: jsonschema's one-line message names the value and the limit."""
    return f"  {dotted(path)}: {_short_message(error)}{_where(path, source)}"


_KINDS = {
    "additionalProperties": _unknown,
    "enum": _enum,
    "type": _type,
    "required": _required,
    "oneOf": _alternatives,
    "anyOf": _alternatives,
}
_TYPES = {"integer": "an integer", "number": "a number", "string": "a string",
          "boolean": "true or false", "array": "a list", "object": "a mapping",
          "null": "null"}  # fmt: skip


def _describe(schema: dict) -> str:
    if "const" in schema:
        return repr(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(map(str, schema["enum"]))
    types = schema.get("type", "any value")
    types = types if isinstance(types, list) else [types]
    text = " or ".join(_TYPES.get(t, t) for t in types)
    bounds = [f">= {schema['minimum']}"] if "minimum" in schema else []
    bounds += [f"<= {schema['maximum']}"] if "maximum" in schema else []
    return text + (" " + " and ".join(bounds) if bounds else "")


def _short(value, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_message(error) -> str:
    # jsonschema puts the instance's repr first; a long one (a whole mapping) is cut
    text = error.message
    whole = repr(error.instance)
    if text.startswith(whole) and len(whole) > 60:
        text = _short(error.instance) + text[len(whole) :]
    return text
