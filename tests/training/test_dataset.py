"""Training inputs: augmentation is deterministic per seed and keeps the image's content."""

import numpy as np

from triage.training.dataset import augment


def test_augment_is_deterministic_and_flips_or_shifts():
    rng = np.random.default_rng(0)
    image = rng.random((3, 32, 32), dtype=np.float32)
    outputs = [augment(image, seed) for seed in range(20)]
    assert all(np.array_equal(augment(image, seed), outputs[seed]) for seed in range(20))
    assert all(out.shape == image.shape and out.dtype == np.float32 for out in outputs)
    flipped = image[:, :, ::-1]
    assert any(not np.array_equal(out, image) for out in outputs)
    # A shift moves content by at most 4 % of the side: the central part is still there, maybe mirrored.
    for out in outputs:
        centre = out[:, 8:24, 8:24]
        assert any(
            np.array_equal(centre, source[:, 8 + dy : 24 + dy, 8 + dx : 24 + dx])
            for source in (image, flipped) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
        )
