"""Where the bundled synthetic cohorts live (see docs/phantom.md)."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The default cohort of every command: ``clinic`` scenes (both legs, shorts, wall, floor, marker card).
BUNDLED_COHORT = REPO_ROOT / "data" / "phantom-v2"
#: The same 100 people photographed in the ``studio`` look (one lower leg on a plain wall): the
#: condition the first release was measured on, kept for ablations and for tests of measuring precision.
STUDIO_COHORT = REPO_ROOT / "data" / "phantom-v1"
