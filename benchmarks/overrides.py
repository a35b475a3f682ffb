"""``--set MODEL.PARAM=VALUE`` overrides, checked against each model's ``get_params()`` before any fit.

A wrong name or a value of the wrong kind is a configuration error and stops the
command at once (exit 2) with the parameters the model does take, instead of failing
every fold later and exiting 0. Nested parameters are written the scikit-learn way,
``outer__inner`` (``get_params(deep=True)`` names them), and applied with
``set_params`` after the model is built.
"""

from __future__ import annotations

from smi_data.errors import UsageError
from smi_data.params import value_problem

from . import registry


def check_overrides(overrides: dict[str, dict], specs: dict | None = None, *, models=None) -> dict[str, dict]:
    """Check ``{model: {param: value}}`` against every model's parameters; return it unchanged.

    Each model is built once (cheap: no data, no fit) and every override is checked
    by name against ``get_params(deep=True)`` and by kind against the default value,
    then applied with ``set_params`` to that throw-away instance.

    Raises
    ------
    smi_data.errors.UsageError
        An unknown model, an unknown parameter (with the list of known ones) or a
        value of the wrong kind.
    """
    for model, params in (overrides or {}).items():
        if models is not None and model not in models:
            raise UsageError(f"--set names model {model!r}, which is not in this run ({', '.join(models)})")
        try:
            spec = registry.get_spec(model, specs)
        except KeyError as exc:
            raise UsageError(f"--set {model}.…: {exc.args[0]}") from None
        est = spec.build(0)
        known = est.get_params(deep=True)
        for name, value in params.items():
            if name not in known:
                raise UsageError(f"--set {model}.{name}: {model} has no parameter {name!r}; its parameters: "
                                 f"{', '.join(sorted(known)) or '(none)'}")
            problem = value_problem(known[name], value)
            if problem:
                raise UsageError(f"--set {model}.{name}={value!r}: {problem}")
        try:
            est.set_params(**params)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--set {model}: {exc}") from None
    return overrides


def split_nested(params: dict) -> tuple[dict, dict]:
    """``(constructor parameters, nested 'a__b' parameters for set_params)``."""
    flat = {k: v for k, v in params.items() if "__" not in k}
    nested = {k: v for k, v in params.items() if "__" in k}
    return flat, nested


def all_fits_failed(records, by: str = "model") -> list[str]:
    """Names (of ``by``) whose every fit in ``records`` (folds.csv rows) failed."""
    if records is None or not len(records) or by not in records.columns:
        return []
    ok = records["status"].astype(str).str.startswith("ok")
    return [str(k) for k, g in ok.groupby(records[by], sort=False) if not g.any()]
