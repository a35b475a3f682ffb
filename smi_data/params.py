"""Checking a parameter value against the kind of its default (``get_params()``), shared by
``--set`` overrides (benchmarks.overrides) and the model-file loaders (a model.json whose
settings were edited by hand must be refused, not crash later).
"""

from __future__ import annotations

import numbers


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, numbers.Integral):
        return "an integer"
    if isinstance(value, numbers.Real):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, (list, tuple)):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def value_problem(default, value) -> str | None:
    """Why ``value`` cannot replace a parameter whose default is ``default``, or None."""
    if isinstance(value, dict) and not isinstance(default, dict):
        return f"a mapping is not accepted here (the default is {default!r})"
    if isinstance(default, bool):
        return None if isinstance(value, bool) else f"expected true or false, got {_kind(value)} {value!r}"
    if isinstance(default, numbers.Integral):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            return f"expected an integer, got {_kind(value)} {value!r}"
        return None
    if isinstance(default, numbers.Real):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            return f"expected a number, got {_kind(value)} {value!r}"
        if value != value or value in (float("inf"), float("-inf")):
            return f"expected a finite number, got {value!r}"
        return None
    if isinstance(default, str):
        return None if isinstance(value, str) else f"expected text, got {_kind(value)} {value!r}"
    if isinstance(default, (list, tuple)):
        return None if isinstance(value, (list, tuple)) else f"expected a list, got {_kind(value)} {value!r}"
    if default is None and isinstance(value, float) and (value != value or abs(value) == float("inf")):
        return f"expected a finite number, got {value!r}"
    return None


def parse_name_list(value, choices, *, keywords=(), error=ValueError, what: str = "name"):
    """``'a,b'`` (or an iterable of names) -> ``['a', 'b']`` in order without repeats, each one of
    ``choices``; a ``keywords`` word (``'auto'``) is returned as it is. Anything else raises ``error``
    naming what is unknown and listing what may be given (shared by ``--views`` and ``--tiers``)."""
    if isinstance(value, str):
        word = value.strip().lower()
        if word in keywords:
            return word
        value = [v.strip() for v in value.split(",") if v.strip()]
    names = list(dict.fromkeys(value))
    bad = [v for v in names if v not in choices]
    if bad or not names:
        allowed = list(choices) + [f"'{k}'" for k in keywords]
        listed = ", ".join(allowed[:-1]) + " or " + allowed[-1] if len(allowed) > 1 else allowed[0]
        raise error(f"unknown {what}(s) {', '.join(bad) or '(none given)'}; choose from {listed}")
    return names
