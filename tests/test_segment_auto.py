"""`auto` takes the classical finder's mask only where it follows the learned outline (floor, skirting, far leg)."""

import numpy as np
import pytest

from smi_image.segment import AGREE_PX, AGREE_SHARE, classical_agrees, outline_excess

WALL = (200, 205, 210)
SKIN = (80, 110, 160)


def _photo(band=False, floor=False):
    """A drawn leg (x 120-160, y 30-375 of a 300 x 400 photo) on a plain wall; optionally a skirting piece
    (a dark strip at shin height from the leg's edge to x 250, not reaching the frame's side, so the
    classical background model does not know it) or a mat below and beside the foot."""
    import cv2

    img = np.full((400, 300, 3), WALL, np.uint8)
    cv2.rectangle(img, (120, 30), (160, 375), SKIN, -1)
    if band:
        cv2.rectangle(img, (160, 200), (250, 222), (60, 60, 70), -1)
    if floor:
        cv2.rectangle(img, (60, 360), (230, 386), (60, 60, 70), -1)
        cv2.rectangle(img, (120, 30), (160, 375), SKIN, -1)
    return img


def _learned_sees_the_leg(monkeypatch):
    """The network's leg map: the drawn leg only (network px, 128 x 96 for the 400 x 300 photo)."""
    import smi_image.learned as learned

    q = np.zeros((128, 96), np.float32)
    q[10:120, 38:51] = 0.99
    monkeypatch.setattr(learned, "leg_probabilities", lambda im, weights=None: np.stack([q, np.zeros_like(q)]))


def _widest(mask, rows):
    return max(int(np.ptp(np.flatnonzero(mask[y]))) + 1 for y in rows if mask[y].any())


def test_auto_refuses_a_classical_mask_that_took_in_a_skirting_strip(monkeypatch):
    from smi_image.segment import segment_leg

    _learned_sees_the_leg(monkeypatch)
    plain = segment_leg(_photo(), method="auto")
    assert plain.method in ("canny", "otsu")  # one leg on a plain wall: the classical finder, as before
    img = _photo(band=True)
    classical = segment_leg(img, method="classical")
    shin = range(int(205 * classical.fy), int(218 * classical.fy))
    # The photo is made for the rule: the classical finder alone takes the strip in ...
    assert _widest(classical.work, shin) > 1.8 * _widest(plain.work, shin)
    share, _ = outline_excess(classical.work, segment_leg(img, method="learned").work)
    assert share > AGREE_SHARE
    # ... and auto keeps the learned leg, as narrow at the strip as elsewhere.
    seg = segment_leg(img, method="auto")
    assert seg.method == "learned"
    assert _widest(seg.work, shin) <= _widest(plain.work, shin) + 2


def test_auto_refuses_a_classical_mask_that_reaches_into_the_floor_below_the_sole(monkeypatch):
    from smi_image.segment import segment_leg

    _learned_sees_the_leg(monkeypatch)
    img = _photo(floor=True)
    classical = segment_leg(img, method="classical")
    learned = segment_leg(img, method="learned")
    assert outline_excess(classical.work, learned.work)[1] > AGREE_PX
    assert segment_leg(img, method="auto").method == "learned"


def test_auto_takes_the_classical_mask_where_the_learned_one_is_not_leg_shaped(monkeypatch):
    """The outline test guards against a classical mask that over-reaches a usable learned leg; where the
    learned mask is no leg at all (a stubby blob on a drawn photo) and the classical one is, the classical
    one is measured, as before the rule, instead of the photo being refused."""
    import smi_image.learned as learned
    from smi_image.segment import MIN_LEG_ASPECT_LEARNED, leg_aspect, segment_leg

    q = np.zeros((128, 96), np.float32)
    q[40:70, 30:60] = 0.99  # 30 x 30 network px: as long as wide
    monkeypatch.setattr(learned, "leg_probabilities", lambda im, weights=None: np.stack([q, np.zeros_like(q)]))
    img = _photo()
    classical = segment_leg(img, method="classical")
    blob = learned.learned_leg_mask(img, classical.work.shape).work
    assert leg_aspect(blob) < MIN_LEG_ASPECT_LEARNED and not classical_agrees(classical.work, blob)
    with pytest.raises(Exception, match="no leg found"):
        segment_leg(img, method="learned")
    seg = segment_leg(img, method="auto")
    assert seg.method in ("canny", "otsu") and np.array_equal(seg.work, classical.work)


def test_outline_excess_counts_only_what_reaches_outside_the_learned_leg():
    import cv2

    learned = np.zeros((200, 120), bool)
    learned[20:190, 50:70] = True
    assert outline_excess(learned, learned) == (0.0, 0)
    # Edges a few px wider everywhere (the learned mask under-segments): agrees.
    wider = cv2.dilate(learned.astype(np.uint8), np.ones((1, 2 * AGREE_PX + 1), np.uint8)) > 0
    assert classical_agrees(wider, learned)
    # A far foot or a distractor that does not touch the leg is not counted.
    apart = learned.copy()
    apart[60:120, 90:110] = True
    assert outline_excess(apart, learned) == (0.0, 0)
    # A strip joined to the leg over 20 rows: 20 of 2 x 119 row sides of the 10-80 % band.
    strip = learned.copy()
    strip[100:120, 70:100] = True
    share, below = outline_excess(strip, learned)
    assert share == pytest.approx(20 / (2 * 119)) and below == 0
    assert not classical_agrees(strip, learned)
    # The classical mask missing the leg in some rows counts; a mask smaller than the learned one does not.
    holed = learned.copy()
    holed[100:104] = False
    assert outline_excess(holed, learned)[0] == pytest.approx(8 / (2 * 119))
    narrower = learned.copy()
    narrower[:, 50:55] = False
    assert outline_excess(narrower, learned) == (0.0, 0)
    # Rows below the learned sole (floor taken in).
    floor = learned.copy()
    floor[190:198, 40:80] = True
    assert outline_excess(floor, learned)[1] == 8
    assert not classical_agrees(floor, learned)
    assert outline_excess(learned, np.zeros_like(learned)) == (0.0, 0)
    # 0/255 masks are masks; masks of different shapes are refused, not broadcast.
    assert outline_excess(strip.astype(np.uint8) * 255, learned.astype(np.uint8) * 255) == (share, 0)
    with pytest.raises(ValueError, match="same shape"):
        outline_excess(learned[:, :100], learned)
    with pytest.raises(ValueError, match="same shape"):
        outline_excess(np.vstack([learned, learned]), learned)
