"""Two touching legs are split along the probability valley; one leg is not; the far leg of a side view is left out."""

import numpy as np
import pytest

from smi_image.learned import leg_instances, pick_instance, separate_touching_legs


def _two_legs(join_feet=True, join_knees=True):
    """Leg probability of two standing legs (x 20-35 and 45-60), touching at the feet and the knees.

    The join is less sure (0.7) than the legs (0.99): the valley a segmenter leaves between them.
    """
    p = np.zeros((100, 80), np.float32)
    left, right = np.zeros(p.shape, bool), np.zeros(p.shape, bool)
    left[5:95, 20:35] = True
    right[5:95, 45:60] = True
    p[left | right] = 0.99
    if join_feet:
        p[82:95, 35:45] = 0.7
        left[82:95, 35:40], right[82:95, 40:45] = True, True
    if join_knees:
        p[5:14, 35:45] = 0.7
        left[5:14, 35:40], right[5:14, 40:45] = True, True
    p[:, 39:41] = np.minimum(p[:, 39:41], 0.6)  # the valley's floor
    return p, left, right


def _iou(a, b):
    return (a & b).sum() / max(1, (a | b).sum())


@pytest.mark.parametrize("feet,knees", [(True, True), (True, False), (False, True)])
def test_touching_legs_are_split_along_the_valley(feet, knees):
    p, left, right = _two_legs(feet, knees)
    inst = leg_instances(p, np.zeros_like(p))
    assert inst.max() == 2
    by_x = sorted((1, 2), key=lambda k: np.nonzero(inst == k)[1].mean())
    assert _iou(inst == by_x[0], left) > 0.95 and _iou(inst == by_x[1], right) > 0.95
    assert pick_instance(inst, view="posterior", side="L") == by_x[0]
    assert pick_instance(inst, view="posterior", side="R") == by_x[1]


def test_one_leg_with_its_foot_forward_is_not_split():
    region = np.zeros((100, 80), bool)
    region[5:90, 30:45] = True
    region[88:96, 30:70] = True  # the foot of a side view
    parts = separate_touching_legs(region, region.astype(np.float32))
    assert parts.max() == 1 and (parts > 0).sum() == region.sum()


def test_a_thin_sliver_beside_the_leg_does_not_make_two_legs():
    region = np.zeros((100, 80), bool)
    region[5:95, 30:45] = True
    region[40:44, 47:49] = True  # a few rows of something else nearby: too few rows to be a leg
    region[40:44, 45:47] = True
    parts = separate_touching_legs(region, region.astype(np.float32))
    assert parts.max() == 1


def test_the_leg_behind_is_left_out_of_the_photographed_one():
    p = np.zeros((100, 80), np.float32)
    p[5:95, 25:50] = 0.99  # the near leg (25-45) with the far leg's sliver (45-50) beside it
    behind = np.zeros_like(p)
    behind[5:95, 45:50] = 0.9
    inst = leg_instances(p, np.zeros_like(p), behind)
    assert inst.max() == 1
    assert (inst[:, 45:50] == 0).all() and (inst[5:95, 25:45] == 1).all()
    assert (leg_instances(p, np.zeros_like(p))[:, 45:50] == 1).any()  # without the map it is taken in


def test_a_thin_horizontal_smear_is_dropped_from_the_leg():
    from smi_image.learned import drop_horizontal_smears

    leg = np.zeros((100, 80), bool)
    leg[5:95, 30:45] = True
    leg[88:95, 30:60] = True  # the foot (7 rows): kept
    smear = leg.copy()
    smear[60:63, 0:80] = True  # a skirting line 3 rows high taken in at the calf
    out = drop_horizontal_smears(smear)
    assert (out == leg).all()


def test_auto_keeps_the_classical_finder_for_one_leg_on_a_plain_wall_only(monkeypatch):
    """Two legs on a plain wall: the classical finder would take both, so the learned one's leg is used."""
    import cv2

    import smi_image.learned as learned
    from smi_image.segment import segment_leg

    img = np.full((400, 300, 3), (200, 205, 210), np.uint8)
    p = np.zeros((128, 96), np.float32)
    for x0 in (30, 56):  # two legs (network px), photo px x 400/128
        p[10:120, x0:x0 + 12] = 0.99
        cv2.rectangle(img, (int(x0 * 3.125), int(10 * 3.125)), (int((x0 + 12) * 3.125), int(120 * 3.125)),
                      (80, 110, 160), -1)
    monkeypatch.setattr(learned, "leg_probabilities", lambda im, weights=None: np.stack([p, np.zeros_like(p)]))
    seg = segment_leg(img, method="auto", view="posterior", side="R")
    assert seg.method == "learned" and seg.n_legs == 2
    assert np.nonzero(seg.work)[1].mean() > seg.work.shape[1] / 2  # the subject's right: the image's right

    one = np.full((400, 300, 3), (200, 205, 210), np.uint8)
    cv2.rectangle(one, (120, 30), (160, 375), (80, 110, 160), -1)
    q = np.zeros_like(p)
    q[10:120, 38:51] = 0.99
    monkeypatch.setattr(learned, "leg_probabilities", lambda im, weights=None: np.stack([q, np.zeros_like(q)]))
    assert segment_leg(one, method="auto").method in ("canny", "otsu")


def test_a_region_the_network_is_half_sure_of_inside_is_unsure(monkeypatch):
    import smi_image.learned as learned
    from smi_image.errors import SegmentationError
    from smi_image.segment import segment_leg

    p = np.zeros((128, 96), np.float32)
    p[10:120, 36:60] = 0.7  # a sharp outline (sure outside), but only 0.7 inside: certainty 0.4
    monkeypatch.setattr(learned, "leg_probabilities", lambda im, weights=None: np.stack([p, np.zeros_like(p)]))
    img = np.full((400, 300, 3), 128, np.uint8)
    with pytest.raises(SegmentationError, match="inside the leg") as e:
        segment_leg(img, method="learned")
    assert e.value.code == "unsure"
    p[10:120, 36:60] = 0.95
    assert segment_leg(img, method="learned").method == "learned"


def test_two_runs_only_at_the_feet_are_one_leg():
    """A side view: the photographed leg with the other foot's toes beside its own foot."""
    region = np.zeros((120, 80), bool)
    region[5:110, 30:45] = True
    region[100:112, 30:58] = True  # its foot
    region[85:112, 61:70] = True   # the other foot (its toes and heel up to the ankle) beside it...
    region[108:112, 58:61] = True  # ...touching at the sole
    parts = separate_touching_legs(region, region.astype(np.float32))
    assert parts.max() == 1


@pytest.mark.parametrize("view,cut", [("lateral", True), ("posterior", False), (None, False)])
def test_the_behind_map_cuts_the_leg_in_a_side_view_only(monkeypatch, view, cut):
    """A front or back view has two legs side by side, none behind: there the behind map cuts nothing."""
    import smi_image.learned as learned
    from smi_image.segment import segment_leg

    p = np.zeros((128, 96), np.float32)
    p[10:120, 36:60] = 0.99  # the near leg (36-54) with the far leg's sliver (54-60) beside it
    behind = np.zeros_like(p)
    behind[10:120, 54:60] = 0.95
    monkeypatch.setattr(learned, "leg_probabilities",
                        lambda im, weights=None: np.stack([p, np.zeros_like(p), behind]))
    img = np.full((400, 300, 3), 128, np.uint8)
    seg = segment_leg(img, method="learned", view=view)
    cols = np.flatnonzero(seg.work.any(axis=0)) / seg.work.shape[1] * 96  # network columns
    assert (cols.max() < 55) == cut


def test_segment_masks_take_the_photos_own_edges():
    """A coarse learned mask (4 photo px a pixel, edges 2-3 px off) gets the photo's edges row by row."""
    import cv2

    from smi_image.segment import LegSegmentation
    from smi_image.silhouette import edge_refined_mask

    truth = np.zeros((400, 300), bool)
    truth[40:360, 119:182] = True  # a leg 63 px wide
    img = np.full((400, 300, 3), 60, np.uint8)
    img[truth] = (200, 170, 150)
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    work = np.zeros((100, 75), bool)
    work[10:90, 29:46] = True  # the leg as a coarse network saw it, 4 photo px a pixel: 3 px too wide each side
    seg = LegSegmentation(work=work, photo_shape=(400, 300), method="learned", coarse_px=4.0)
    coarse, fine = seg.full_mask(), edge_refined_mask(img, seg)
    assert _iou(fine, truth) > _iou(coarse, truth) + 0.05 and _iou(fine, truth) > 0.97
    rows = np.arange(60, 340)
    width = lambda m: m[rows].sum(axis=1)  # noqa: E731
    assert np.abs(width(coarse) - width(truth)).min() >= 5 and np.abs(width(fine) - width(truth)).max() <= 1
    assert not (fine & ~coarse.any(axis=1)[:, None]).any()  # no row the coarse mask does not have
