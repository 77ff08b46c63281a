"""The batch augmentations, with parameters chosen by hand."""

import torch

from xiqa.model.augment import apply_augmentation, augment_batch, sample_params


def _identity(n):
    return {
        "flip": torch.zeros(n, dtype=torch.bool),
        "brightness": torch.ones(n),
        "contrast": torch.ones(n),
        "angle": torch.zeros(n),
        "shift_x": torch.zeros(n),
        "shift_y": torch.zeros(n),
        "scale": torch.ones(n),
        "shear": torch.zeros(n),
    }


def _images(n=3, size=16):
    return torch.rand(n, size, size, generator=torch.Generator().manual_seed(0))


def test_identity_parameters_change_nothing():
    x = _images()
    torch.testing.assert_close(apply_augmentation(x, _identity(3)), x, atol=1e-5, rtol=0)


def test_flip_only_the_chosen_images():
    x = _images()
    params = _identity(3)
    params["flip"] = torch.tensor([True, False, True])
    y = apply_augmentation(x, params)
    torch.testing.assert_close(y[0], x[0].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(y[1], x[1], atol=1e-5, rtol=0)


def test_rotation_by_90_degrees_is_a_rot90():
    x = _images(1)
    params = _identity(1)
    params["angle"] = torch.tensor([90.0])
    y = apply_augmentation(x, params)[0]
    # Either direction of rotation is a valid convention; it must be an exact quarter turn.
    turns = [torch.rot90(x[0], k, (0, 1)) for k in (1, 3)]
    assert min((y - t).abs().max() for t in turns) < 1e-5


def test_whole_pixel_shift_moves_content_and_fills_black():
    x = _images(1)
    params = _identity(1)
    params["shift_x"] = torch.tensor([3.0])
    y = apply_augmentation(x, params)[0]
    torch.testing.assert_close(y[:, 3:], x[0][:, :-3], atol=1e-5, rtol=0)
    assert y[:, :3].abs().max() < 1e-6


def test_brightness_and_contrast_by_hand():
    x = torch.tensor([[[0.2, 0.4], [0.6, 0.8]]])
    params = _identity(1)
    params["brightness"] = torch.tensor([0.5])
    torch.testing.assert_close(apply_augmentation(x, params), x * 0.5, atol=1e-6, rtol=0)
    params = _identity(1)
    params["contrast"] = torch.tensor([2.0])
    expected = torch.tensor([[[0.0, 0.3], [0.7, 1.0]]])  # (x - 0.5) * 2 + 0.5, clamped
    torch.testing.assert_close(apply_augmentation(x, params), expected, atol=1e-6, rtol=0)


def test_sampled_parameters_stay_in_the_papers_ranges_and_repeat_with_the_seed():
    params = sample_params(4000, 100, torch.Generator().manual_seed(1))
    assert 0.45 < params["flip"].float().mean() < 0.55
    assert params["angle"].abs().max() <= 30 and params["shear"].abs().max() <= 0.1
    assert params["shift_x"].abs().max() <= 10 and torch.equal(
        params["shift_x"], params["shift_x"].round()
    )
    assert params["scale"].min() >= 0.95 and params["scale"].max() <= 1.05
    a = augment_batch(_images(), torch.Generator().manual_seed(5))
    b = augment_batch(_images(), torch.Generator().manual_seed(5))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert a.min() >= 0 and a.max() <= 1
