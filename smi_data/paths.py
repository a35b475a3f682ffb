"""Where the bundled synthetic cohort lives."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The synthetic cohort shipped with the repository (see docs/phantom.md).
BUNDLED_COHORT = REPO_ROOT / "data" / "phantom-v1"
