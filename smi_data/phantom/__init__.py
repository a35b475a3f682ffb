"""The phantom: a synthetic cohort of lower-leg photos with known SMI, rendered from the Anny body model.

Modules: :mod:`.sampling` (who), :mod:`.body` (Anny bodies and limb volumes; needs the
``phantom`` extra), :mod:`.geometry` (exact clipped volumes, slices), :mod:`.truth`
(composition, SMI, calf measures), :mod:`.camera` and :mod:`.render` (studio photos),
:mod:`.scene` and :mod:`.textures` (clinic and wild scenes with label maps),
:mod:`.generate` (datasets), :mod:`.ceiling` (best possible accuracy; no anny needed).
See docs/phantom.md. Nothing here imports anny or torch at import time.
"""
