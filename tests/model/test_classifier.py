"""Probability composition, batching, the ONNX backend and activation maps."""

import numpy as np
import pytest
import torch

from triage.errors import ModelError
from triage.model import Classifier, compose_probabilities, save_random_model, update_metadata
from triage.model.cam import class_activation_map


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("model") / "m", backbone="resnet18", image_size=64, seed=0)


@pytest.fixture(scope="module")
def classifier(model_dir):
    return Classifier(model_dir, device="cpu", batch_size=3)


@pytest.fixture(scope="module")
def batch():
    return np.random.default_rng(5).random((7, 3, 64, 64), dtype=np.float32)


def test_compose_multiplies_and_zeroes_rows_without_stage_two():
    p_any = np.array([0.9, 0.2, 0.5, 0.7], np.float32)
    ran = p_any >= 0.5
    given = np.array([[1.0, 0.5, 0.0, 0.2, 0.1], [0.3, 0.3, 0.3, 0.3, 0.3], [0.5, 1.0, 0.0, 0.0, 0.0]], np.float32)
    out = compose_probabilities(p_any, given, ran)
    assert out.shape == (4, 6)
    np.testing.assert_allclose(out[:, 0], p_any)
    np.testing.assert_allclose(out[0, 1:], 0.9 * given[0], rtol=1e-6)
    np.testing.assert_allclose(out[2, 1:], 0.5 * given[1], rtol=1e-6)
    np.testing.assert_allclose(out[3, 1:], 0.7 * given[2], rtol=1e-6)
    assert not out[1, 1:].any()
    assert (out[:, 1:] <= out[:, :1] + 1e-7).all()
    with pytest.raises(ValueError, match=r"expected \(3, 5\)"):
        compose_probabilities(p_any, given[:2], ran)


def test_predict_runs_stage_two_only_above_detection_threshold(classifier, batch, model_dir, tmp_path):
    p_any = classifier.detect(batch)
    threshold = float(np.median(p_any))
    import shutil

    copy = tmp_path / "m"
    shutil.copytree(model_dir, copy)
    update_metadata(copy, detection_threshold=threshold)
    tuned = Classifier(copy, device="cpu", batch_size=3)
    calls = []
    runner = tuned._runners["subtype"]
    tuned._runners["subtype"] = lambda x: calls.append(len(x)) or runner(x)
    out = tuned.predict(batch)
    above = p_any >= threshold
    assert calls == [int(above.sum())]
    np.testing.assert_allclose(out[:, 0], p_any, atol=1e-6)
    np.testing.assert_allclose(out[above, 1:], p_any[above, None] * classifier.subtype(batch[above]), atol=1e-6)
    assert not out[~above, 1:].any()


def test_batching_does_not_change_results(classifier, batch, model_dir):
    whole = Classifier(model_dir, device="cpu", batch_size=16).detect(batch)
    np.testing.assert_allclose(classifier.detect(batch), whole, atol=1e-5)
    one_by_one = np.concatenate([classifier.detect(batch[i : i + 1]) for i in range(len(batch))])
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)


def test_matches_plain_eager_network(classifier, batch):
    network = classifier._torch["detect"].network
    with torch.no_grad():
        reference = torch.sigmoid(network(torch.from_numpy(batch)))[:, 0].numpy()
    np.testing.assert_allclose(classifier.detect(batch), reference, atol=1e-5)


def test_onnx_backend_agrees_with_torch(model_dir, classifier, batch):
    onnx = Classifier(model_dir, device="cpu", backend="onnx", threads=1, batch_size=4)
    assert onnx.version == classifier.version
    np.testing.assert_allclose(onnx.detect(batch), classifier.detect(batch), atol=1e-4)
    np.testing.assert_allclose(onnx.subtype(batch), classifier.subtype(batch), atol=1e-4)
    np.testing.assert_allclose(onnx.predict(batch), classifier.predict(batch), atol=1e-4)


def test_activation_map_is_normalised_and_follows_the_weights(classifier, batch):
    heat = classifier.activation_map(batch[0])
    assert heat.shape == (64, 64) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() == pytest.approx(1.0)
    with pytest.raises(ModelError, match="shape"):
        classifier.activation_map(batch[0, :2])


def test_activation_map_of_a_negative_weight_head_is_zero(classifier, batch):
    network = classifier._torch["detect"].network
    saved = network.fc.weight.detach().clone()
    try:
        with torch.no_grad():
            network.fc.weight.fill_(-1.0)  # features after ReLU are >= 0: nothing speaks for a bleed
        heat = class_activation_map(network, batch[0], torch.device("cpu"))
    finally:
        with torch.no_grad():
            network.fc.weight.copy_(saved)
    assert not heat.any()


def test_cam_sums_to_the_logit(classifier, batch):
    # The CAM identity: mean over space of sum_c w_c f_c + bias == the logit (before ReLU and resizing).
    from triage.model.cam import _features

    network = classifier._torch["detect"].network
    with torch.inference_mode():
        x = torch.from_numpy(batch[:1])
        features = _features(network, x)
        cam = torch.einsum("nchw,c->nhw", features, network.fc.weight[0])
        logit = network(x)[0, 0]
    assert float(cam.mean() + network.fc.bias[0].detach()) == pytest.approx(float(logit), abs=1e-4)


def test_input_pool_model_round_trips_and_onnx_agrees(tmp_path, batch):
    model_dir = save_random_model(tmp_path / "pooled", image_size=64, seed=1, input_pool=2)
    torch_classifier = Classifier(model_dir, device="cpu")
    assert torch_classifier.info()["input_pool"] == 2
    onnx_classifier = Classifier(model_dir, device="cpu", backend="onnx", threads=1)
    np.testing.assert_allclose(onnx_classifier.predict(batch), torch_classifier.predict(batch), atol=1e-4)
    assert torch_classifier.activation_map(batch[0]).shape == (64, 64)
