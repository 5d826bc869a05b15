"""The balanced under-sampler: batch composition of the paper's Table 1, determinism, coverage."""

import numpy as np
import pytest

from triage.training.sampler import (
    DETECT_SHARES,
    NEGATIVE,
    SUBTYPE_SHARES,
    BalancedBatchSampler,
    batch_composition,
    composition_of,
    default_steps,
)


def _labels(rng, n=2000, positive=0.14):
    """Single-subtype slices: negatives, and positives spread unevenly over the subtypes (few epidural)."""
    labels = np.zeros((n, 6), np.uint8)
    positives = rng.random(n) < positive
    subtype = rng.choice(5, size=n, p=[0.03, 0.3, 0.2, 0.2, 0.27])
    labels[positives, 0] = 1
    labels[positives, 1 + subtype[positives]] = 1
    return labels


def test_composition_of_the_paper():
    assert batch_composition(128, DETECT_SHARES) == {NEGATIVE: 48, **dict.fromkeys(
        ["epidural", "intraparenchymal", "intraventricular", "subarachnoid", "subdural"], 16)}
    small = batch_composition(10, DETECT_SHARES)
    assert sum(small.values()) == 10 and small[NEGATIVE] in (3, 4, 5)
    assert set(batch_composition(10, SUBTYPE_SHARES).values()) == {2}
    with pytest.raises(ValueError, match="batch size 0"):
        batch_composition(0, DETECT_SHARES)


def test_every_batch_has_37_5_percent_negatives_and_12_5_percent_per_subtype():
    labels = _labels(np.random.default_rng(0))
    sampler = BalancedBatchSampler(labels, batch_size=32, steps=20, seed=1)
    batches = list(sampler)
    assert len(batches) == 20 == len(sampler)
    for batch in batches:
        assert len(batch) == 32
        shares = composition_of(labels, [i for i, _ in batch])
        assert shares[NEGATIVE] == pytest.approx(0.375)
        for name in SUBTYPE_SHARES:
            assert shares[name] == pytest.approx(0.125)


def test_multi_label_slices_lift_their_subtypes_above_the_share():
    labels = _labels(np.random.default_rng(0))
    labels[labels[:, 2] == 1, 5] = 1  # every intraparenchymal slice is also subdural
    batch = next(iter(BalancedBatchSampler(labels, batch_size=128, steps=1, seed=0)))
    shares = composition_of(labels, [i for i, _ in batch])
    assert shares[NEGATIVE] == pytest.approx(0.375)
    assert shares["subdural"] >= 0.25 - 1e-9


def test_small_pools_repeat_only_after_all_were_seen():
    labels = _labels(np.random.default_rng(2))
    epidural = set(np.flatnonzero(labels[:, 1] == 1))
    sampler = BalancedBatchSampler(labels, batch_size=16, steps=len(epidural), seed=0)
    drawn = [i for batch in sampler for i, _ in batch if labels[i, 1] == 1]
    per_batch = 2  # 12.5 % of 16
    batches_for_a_pass = -(-len(epidural) // per_batch)
    assert set(drawn[: batches_for_a_pass * per_batch]) == epidural  # a full pass before any repetition
    assert len(set(drawn[: len(epidural) - 1])) == len(epidural) - 1


def test_same_seed_and_epoch_give_the_same_batches():
    labels = _labels(np.random.default_rng(3))
    a = BalancedBatchSampler(labels, batch_size=16, steps=5, seed=7)
    b = BalancedBatchSampler(labels, batch_size=16, steps=5, seed=7)
    assert list(a) == list(b)
    b.set_epoch(1)
    assert list(a) != list(b)
    a.set_epoch(1)
    assert list(a) == list(b)


def test_subtype_stage_draws_positives_only():
    labels = _labels(np.random.default_rng(4))
    positives = labels[labels[:, 0] == 1]
    sampler = BalancedBatchSampler(positives, batch_size=10, steps=5, shares=SUBTYPE_SHARES, seed=0)
    for batch in sampler:
        shares = composition_of(positives, [i for i, _ in batch])
        assert shares[NEGATIVE] == 0
        assert all(shares[name] == pytest.approx(0.2) for name in SUBTYPE_SHARES)


def test_a_missing_subtype_gives_its_share_away(caplog):
    labels = _labels(np.random.default_rng(5))
    labels[labels[:, 1] == 1] = 0  # no epidural slice at all (they become negatives)
    sampler = BalancedBatchSampler(labels, batch_size=16, steps=3, seed=0)
    assert "epidural" in caplog.text
    for batch in sampler:
        assert len(batch) == 16
        assert composition_of(labels, [i for i, _ in batch])["epidural"] == 0


def test_default_steps_show_each_positive_about_once():
    labels = _labels(np.random.default_rng(6))
    positives = int(labels[:, 0].sum())
    steps = default_steps(labels, 32, DETECT_SHARES)
    assert steps * 20 >= positives > (steps - 1) * 20
