"""The segmenter's CPU inference path (fused, channels-last) gives the unfused network's probabilities."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from smi_image import learned  # noqa: E402
from smi_image.nets import TinyUNet  # noqa: E402


def _trained_looking(widths, seed=0, out_channels=3):
    """A TinyUNet whose batch norms have non-trivial statistics and affine parameters (as after training)."""
    g = torch.Generator().manual_seed(seed)
    net = TinyUNet(widths, out_channels=out_channels)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.randn(n, generator=g) * 0.5 + 1)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)
    return net.eval()


@pytest.mark.parametrize("widths, shape", [((8, 16, 32, 64, 96), (1, 3, 128, 96)),
                                           ((8, 16, 32, 64), (1, 3, 160, 112)),
                                           ((4, 8, 16), (2, 3, 48, 64))])
def test_fused_network_equals_unfused(widths, shape):
    net = _trained_looking(widths)
    fast = learned.fuse_for_inference(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is left as it was
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        a = torch.sigmoid(net(x))
        b = torch.sigmoid(fast(x.contiguous(memory_format=torch.channels_last)))
    assert b.shape == a.shape
    assert float((a - b).abs().max()) < 1e-5
    # and it is not trivially equal: the batch norms matter
    plain = TinyUNet(widths, out_channels=3).eval()
    plain.load_state_dict({k: v for k, v in net.state_dict().items()})
    for m in plain.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
    with torch.inference_mode():
        assert float((torch.sigmoid(plain(x)) - a).abs().max()) > 1e-3


@pytest.mark.skipif(not learned.WEIGHTS.is_file(), reason="no shipped segmenter weights")
def test_shipped_weights_probabilities_match_the_unfused_network():
    rng = np.random.default_rng(5)
    img = np.full((400, 300, 3), (170, 180, 190), np.uint8)
    img[60:380, 120:170] = (120, 150, 200)  # a skin-coloured bar
    img = np.clip(img.astype(int) + rng.integers(-12, 13, img.shape), 0, 255).astype(np.uint8)
    model, meta = learned.load_segmenter()
    x, (hs, ws) = learned.network_input(img, meta["input_long_px"], model.stride)
    with torch.inference_mode():
        ref = torch.sigmoid(model(torch.from_numpy(x)[None])[0, :, :hs, :ws]).numpy()
    got = learned.leg_probabilities(img)
    assert got.shape == ref.shape and got.dtype == np.float32 and got.flags.c_contiguous
    assert float(np.abs(got - ref).max()) < 1e-5


def _split_on_whole_image(labels, n, p_leg):
    """The split as it was before the bounding boxes: each component's region over the whole image."""
    out = labels.copy()
    nxt = n
    for k in range(1, n):
        region = labels == k
        if region.sum() < 50:
            continue
        parts = learned.separate_touching_legs(region, p_leg)
        if parts.max() >= 2:
            out[(parts == 2) & region] = nxt
            nxt += 1
    return out, nxt


def test_split_inside_bounding_boxes_equals_the_whole_image_split():
    import cv2

    rng = np.random.default_rng(2)
    h, w = 200, 160
    yy, xx = np.mgrid[:h, :w]
    p = np.zeros((h, w))
    # two legs touching at the feet (one component), a single leg, and specks
    for cx in (50, 78):
        p = np.maximum(p, np.exp(-((xx - cx) / 9.0) ** 2) * ((yy > 30) & (yy < 170)))
    p[160:172, 40:90] = np.maximum(p[160:172, 40:90], 0.9)
    p = np.maximum(p, np.exp(-((xx - 135) / 8.0) ** 2) * ((yy > 20) & (yy < 190)))
    p = np.clip(p + rng.normal(0, 0.05, p.shape), 0, 1)
    p[5:8, 5:8] = 0.9
    core = (p >= 0.5).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(core, connectivity=4)
    assert n >= 4
    got, n_got = learned._split_touching(labels, n, p, stats)
    ref, n_ref = _split_on_whole_image(labels, n, p)
    assert n_got == n_ref == n + 1  # the touching pair was split
    np.testing.assert_array_equal(got, ref)


@pytest.mark.skipif(not learned.WEIGHTS.is_file(), reason="no shipped segmenter weights")
def test_network_input_from_the_working_copy_is_the_photos_own_within_a_grey_level():
    import cv2

    from smi_image.segment import working_image

    model, meta = learned.inference_network()
    rng = np.random.default_rng(3)
    img = np.clip(rng.normal(150, 40, (800, 600, 3)), 0, 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (0, 0), 1.2)
    small, _, _ = working_image(img, 256)
    src = learned.network_input_source(img, small)
    assert src is small  # 256 px is twice the network's input
    a, shape_a = learned.network_input(img, meta["input_long_px"], model.stride)
    b, shape_b = learned.network_input(src, meta["input_long_px"], model.stride)
    assert shape_a == shape_b and a.shape == b.shape
    assert float(np.abs(a - b).max()) <= 1.0 / 255 + 1e-6
    assert float(np.abs(a - b).mean()) < 0.5 / 255
    # a working copy under twice the network's input is not used: the photo is
    tiny = cv2.resize(img, (meta["input_long_px"] * 3 // 4, meta["input_long_px"]), interpolation=cv2.INTER_AREA)
    assert learned.network_input_source(img, tiny) is img
    assert learned.network_input_source(img, None) is img
