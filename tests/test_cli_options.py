"""Every command's common options come from one decorator: one name, type and help text everywhere."""

from __future__ import annotations

import click
import pytest

import cli


def _commands(group=cli.main, prefix=""):
    for name, cmd in sorted(group.commands.items()):
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix}{name} ")
        else:
            yield f"{prefix}{name}", cmd


def _options(flag: str) -> dict[str, click.Option]:
    return {name: p for name, cmd in _commands() for p in cmd.params
            if isinstance(p, click.Option) and flag in p.opts}


#: option -> (the shared help text, how each command's help must contain it, commands that take another option
#: of that name on purpose: speed's --jobs is a list of process counts to time, segment's --view a photo's view)
SHARED = {
    "--overwrite": (cli.OVERWRITE_HELP, "equal", ()),
    "--repeats": (cli.REPEATS_HELP, "equal", ()),
    "--splits": (cli.SPLITS_HELP, "equal", ()),
    "--set": (cli.SET_HELP, "equal", ()),
    "--segmenter": (cli.SEGMENTER_HELP, "equal", ()),
    "--max-concurrent": (None, "equal", ()),
    "--seed": (cli.SEED_HELP, "start", ()),
    "--jobs": (cli.JOBS_HELP, "start", ("speed",)),
    "--view": (cli.VIEW_HELP, "start", ("segment",)),
    "--tiers": (cli.TIERS_HELP, "start", ()),
    "--tier": (cli.TIER_HELP, "start", ()),
    "--folds": (cli.FOLDS_HELP, "start", ()),
    "--cluster": (cli.CLUSTER_HELP, "start", ()),
    "--out": (cli.OUT_HELP_END, "end", ()),
}


@pytest.mark.parametrize("flag", sorted(SHARED))
def test_common_options_share_one_help_text_and_type(flag):
    text, how, others = SHARED[flag]
    found = {name: p for name, p in _options(flag).items() if name not in others}
    assert len(found) >= 2 or flag in ("--tier", "--max-concurrent", "--splits") and found, (flag, sorted(found))
    helps = {name: p.help for name, p in found.items()}
    if text is None:
        text = next(iter(helps.values()))
    for name, h in helps.items():
        ok = {"equal": h == text, "start": h.startswith(text), "end": h.endswith(text)}[how]
        assert ok, f"{name} {flag}: {h!r} does not {how} with {text!r}"
    kinds = {(type(p.type).__name__, tuple(getattr(p.type, "choices", ()) or ()), p.is_flag, p.multiple)
             for name, p in found.items() if flag != "--out"}  # --out: a file for some commands, a folder for others
    assert len(kinds) <= 1, (flag, kinds)


def test_every_command_that_writes_out_can_overwrite_and_the_dataset_is_one_argument():
    for name, cmd in _commands():
        opts = {o for p in cmd.params if isinstance(p, click.Option) for o in p.opts}
        if "--out" in opts:
            assert "--overwrite" in opts, name
        for p in cmd.params:
            if isinstance(p, click.Argument) and p.name == "dataset":
                assert isinstance(p.type, click.Path) and not p.type.file_okay, name


def test_shared_defaults_are_what_the_readme_and_tests_use():
    opts = {n: {o: p for p in cmd.params for o in getattr(p, "opts", ())} for n, cmd in _commands()}
    assert opts["benchmark"]["--out"].default == "legsmi-benchmark" and opts["benchmark"]["--jobs"].default is None
    assert opts["benchmark"]["--tiers"].default == "auto" and opts["ablate"]["--view"].default == "lateral"
    assert opts["splits"]["--out"].default == "splits.json" and opts["train"]["--out"].required
    assert all(opts[n]["--seed"].default == 0 for n in opts if "--seed" in opts[n])


def test_domain_facts_are_named_once():
    """Views, sexes, devices and the version come from one place each."""
    import importlib.metadata

    import smi_data
    from benchmarks import aggregate, predict
    from smi_app import uploads
    from smi_data import cutoffs, manifest, modelfile

    assert tuple(cli.VIEW_CHOICE.choices) == manifest.VIEW_CHOICES  # cli keeps a literal: --help loads no pandas
    assert modelfile.MODEL_VIEWS is manifest.VIEW_CHOICES and aggregate.VIEW_ORDER is manifest.VIEW_CHOICES
    assert predict.VIEWS is manifest.VIEWS and uploads.PHOTO_FIELDS is manifest.VIEWS
    assert manifest.SEXES is cutoffs.SEXES and manifest.DEVICES is cutoffs.DEVICES
    assert cli.__version__ == smi_data.__version__ == importlib.metadata.version("legsmi")
    import numpy as np

    np.testing.assert_array_equal(manifest.male_indicator(["M", "F", " m", "x", None]), [1, 0, 1, np.nan, np.nan])
