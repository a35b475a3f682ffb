"""Predictions with the reason for every sample that got none.

Every legsmi estimator returns NaN for a sample it cannot measure and says why. Its
``predict`` only predicts: it leaves the fitted estimator unchanged (scikit-learn's
``check_dict_unchanged``), so the reasons come from ``predict_with_reasons(X)``, which
returns ``(predictions, {sample_id: reason})``; ``failures_`` holds the reasons of the
samples ``fit`` could not use. :func:`predict_with_reasons` calls the method where an
estimator has it, so callers (the benchmark harness, ``train``, ``predict``, the fuzz
campaign, the interval wrappers) treat every model alike; a foreign estimator without
the method gives no reasons.
"""

from __future__ import annotations

import numpy as np


def predict_with_reasons(estimator, X) -> tuple[np.ndarray, dict[str, str]]:
    """``(1-D float predictions, {sample_id: reason})`` of ``estimator`` on ``X``."""
    method = getattr(estimator, "predict_with_reasons", None)
    if method is not None:
        out, reasons = method(X)
    else:
        out, reasons = estimator.predict(X), {}
    return np.asarray(out, dtype=float).ravel(), {str(k): str(v) for k, v in (reasons or {}).items()}

