"""Library code leaves global state alone: no matplotlib backend switch, logging instead of print."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIBRARY = ("smi_data", "smi_image", "smi_features", "smi_deep", "benchmarks", "smi_app")


def _library_files():
    for pkg in LIBRARY:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_no_library_module_switches_the_matplotlib_backend_or_uses_pyplot():
    bad = []
    for f in _library_files():
        text = f.read_text(encoding="utf-8")
        for needle in ("matplotlib.use(", "import matplotlib.pyplot", "from matplotlib import pyplot"):
            if needle in text:
                bad.append(f"{f.relative_to(ROOT)}: {needle}")
    assert not bad, bad


def test_plots_keep_a_notebooks_backend():
    """Drawing the benchmark's and the SHAP module's plots leaves the chosen backend as it was."""
    code = (
        "import matplotlib; matplotlib.use('svg'); import numpy as np, pandas as pd\n"
        "from benchmarks.report import plot_bland_altman\n"
        "rng = np.random.default_rng(0); n = 30\n"
        "p = pd.DataFrame({'view': 'lateral', 'repeat': 0, 'model': 'm', 'sex': ['M', 'F'] * 15,\n"
        "                  'y_true': rng.normal(7, 1, n), 'y_pred': rng.normal(7, 1, n)})\n"
        "import sys; out = plot_bland_altman(p, 'lateral', ['m'], sys.argv[1])\n"
        "assert out is not None\n"
        "print(matplotlib.get_backend())\n"
    )
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([sys.executable, "-c", code, str(Path(d) / "ba.png")], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip().lower() == "svg" and (Path(d) / "ba.png").stat().st_size > 1000


def _prints(tree: ast.AST) -> list[int]:
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id == "print"]


#: Modules whose job is to print: a ``python -m`` report tool writing Markdown to stdout, and the
#: torchrun entry whose one JSON line on stdout is its result.
PRINTING_MAIN = {"smi_data/phantom/report.py", "smi_deep/ddp.py"}


def test_library_modules_log_instead_of_printing_or_warning():
    bad = []
    for f in _library_files():
        rel = str(f.relative_to(ROOT))
        tree = ast.parse(f.read_text(encoding="utf-8"))
        if rel not in PRINTING_MAIN:
            bad += [f"{rel}:{ln}: print()" for ln in _prints(tree)]
        for n in ast.walk(tree):
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "warn" \
                    and isinstance(n.func.value, ast.Name) and n.func.value.id == "warnings":
                bad.append(f"{rel}:{n.lineno}: warnings.warn()")
    assert not bad, bad


def test_cli_verbose_and_quiet_set_the_library_loggers():
    import logging

    from click.testing import CliRunner

    import cli

    def emit(args):
        @cli.main.command("log-probe", hidden=True)
        def probe():
            logging.getLogger("smi_data.probe").info("probe-info")
            logging.getLogger("benchmarks.probe").warning("probe-warning")

        try:
            return CliRunner().invoke(cli.main, [*args, "log-probe"])
        finally:
            cli.main.commands.pop("log-probe", None)

    default, verbose, quiet = emit([]), emit(["-v"]), emit(["--quiet"])
    assert default.exit_code == verbose.exit_code == quiet.exit_code == 0
    assert "WARNING: probe-warning" in default.output and "probe-info" not in default.output
    assert "INFO: probe-info" in verbose.output and "probe-warning" in verbose.output
    assert "probe" not in quiet.output
    # handlers are replaced, not stacked, when the CLI runs again in one process
    assert emit(["-v"]).output.count("probe-warning") == 1


def test_docstrings_hold_no_tables_of_measured_results():
    """Measured figures live in docs/ (docs/results.md), not in docstrings that outlive them."""
    import re

    # a results table's header (a "MAPE %" column) or a "Measured (cohort, splits, ...)" heading
    table_row = re.compile(r"MAPE %|^\s*Measured \(", re.M)
    bad = []
    for f in _library_files():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        for n in ast.walk(tree):
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                doc = ast.get_docstring(n) or ""
                if table_row.search(doc):
                    bad.append(f"{f.relative_to(ROOT)}:{getattr(n, 'name', '<module>')}")
    assert not bad, bad
