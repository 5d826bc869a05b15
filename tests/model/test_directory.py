"""Model directory: round trip, and rejection of every kind of bad directory."""

import json
import shutil

import numpy as np
import pytest
import torch

from triage.errors import ModelError
from triage.model import (
    Classifier,
    build_network,
    load_model_directory,
    read_metadata,
    save_model_directory,
    save_random_model,
    update_metadata,
)
from triage.model.directory import sha256_file


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_random_model(tmp_path_factory.mktemp("model") / "m", backbone="resnet18", image_size=64, seed=3)


@pytest.fixture
def copy(model_dir, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(model_dir, target)
    return target


def _edit(path, **changes):
    data = json.loads((path / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            data.pop(key, None)
        else:
            data[key] = value
    (path / "model.json").write_text(json.dumps(data))


def test_round_trip_keeps_weights_and_metadata(tmp_path):
    torch.manual_seed(1)
    networks = {"detect": build_network("resnet18", 1), "subtype": build_network("resnet18", 5)}
    thresholds = {"any": 0.3, "epidural": 0.2, "intraparenchymal": 0.4, "intraventricular": 0.5,
                  "subarachnoid": 0.6, "subdural": 0.7}
    written = save_model_directory(
        tmp_path / "m", networks, name="ich-test", backbone="resnet18", image_size=96,
        thresholds=thresholds, detection_threshold=0.25, training={"studies": 3}, metrics={"auc": 0.5},
    )
    meta, loaded = load_model_directory(tmp_path / "m")
    assert meta == written
    assert meta.thresholds == thresholds and meta.detection_threshold == 0.25
    assert meta.training == {"studies": 3} and meta.image_size == 96
    assert meta.version.startswith("ich-test-") and len(meta.version) == len("ich-test-") + 12
    for stage, network in networks.items():
        original = network.state_dict()
        for key, value in loaded[stage].state_dict().items():
            assert torch.equal(value, original[key]), key


def test_random_model_is_seeded_and_loads(model_dir, tmp_path):
    again = save_random_model(tmp_path / "again", image_size=64, seed=3)
    other = save_random_model(tmp_path / "other", image_size=64, seed=4)
    assert read_metadata(again).version == read_metadata(model_dir).version
    assert read_metadata(other).version != read_metadata(model_dir).version
    classifier = Classifier(model_dir, device="cpu")
    assert classifier.backbone == "resnet18" and classifier.image_size == 64
    assert classifier.class_names[0] == "any" and len(classifier.class_names) == 6
    assert classifier.windowing == "sigmoid"
    assert set(classifier.default_thresholds) == set(classifier.class_names)


def test_missing_directory_and_metadata(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        load_model_directory(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no model.json"):
        load_model_directory(tmp_path / "empty")


def test_rejects_bad_checksum(copy):
    data = bytearray((copy / "detect.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (copy / "detect.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch for 'detect.safetensors'"):
        load_model_directory(copy)


def test_rejects_missing_stage_entry(copy):
    data = json.loads((copy / "model.json").read_text())
    del data["stages"]["subtype"]
    (copy / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match=r"stage\(s\) \['subtype'\] missing"):
        load_model_directory(copy)


def test_rejects_missing_stage_file(copy):
    (copy / "subtype.safetensors").unlink()
    with pytest.raises(ModelError, match="subtype.*is missing"):
        load_model_directory(copy)


def test_rejects_unknown_format_version(copy):
    _edit(copy, format_version=2)
    with pytest.raises(ModelError, match="unknown format version 2"):
        load_model_directory(copy)


def test_rejects_unknown_backbone(copy):
    _edit(copy, backbone="vgg16")
    with pytest.raises(ModelError, match="unknown backbone 'vgg16'"):
        load_model_directory(copy)


def test_rejects_weights_of_another_backbone(copy):
    _edit(copy, backbone="resnet34")
    with pytest.raises(ModelError, match="do not fit backbone 'resnet34'"):
        load_model_directory(copy)


def test_rejects_path_outside_directory(copy):
    data = json.loads((copy / "model.json").read_text())
    data["stages"]["detect"]["file"] = "../detect.safetensors"
    (copy / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="expected a plain file name"):
        load_model_directory(copy)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format": "pickle"}, "format is 'pickle'"),
        ({"image_size": "big"}, "image_size"),
        ({"windowing": "gamma"}, "windowing 'gamma'"),
        ({"class_names": ["any"]}, "class_names"),
        ({"thresholds": {"any": 2.0}}, "thresholds lack"),
        ({"detection_threshold": 1.5}, "detection_threshold is 1.5"),
        ({"name": None}, "'name' is missing"),
    ],
)
def test_rejects_malformed_metadata(copy, changes, message):
    _edit(copy, **changes)
    with pytest.raises(ModelError, match=message):
        load_model_directory(copy)


def test_rejects_non_json_and_pickles(copy):
    (copy / "model.json").write_text("not json")
    with pytest.raises(ModelError, match="cannot read"):
        load_model_directory(copy)


def test_rejects_non_safetensors_weights_with_matching_checksum(copy):
    # A pickle in place of the safetensors file (with a correct checksum) is never unpickled.
    import pickle

    (copy / "detect.safetensors").write_bytes(pickle.dumps({"x": 1}))
    data = json.loads((copy / "model.json").read_text())
    data["stages"]["detect"]["sha256"] = sha256_file(copy / "detect.safetensors")
    (copy / "model.json").write_text(json.dumps(data))
    with pytest.raises(ModelError, match="cannot read .* as safetensors"):
        load_model_directory(copy)


def test_update_metadata_changes_thresholds_only(copy):
    before = read_metadata(copy)
    thresholds = dict(before.thresholds, any=0.2)
    update_metadata(copy, thresholds=thresholds)
    after = read_metadata(copy)
    assert after.thresholds["any"] == 0.2 and after.version == before.version
    with pytest.raises(ModelError, match="thresholds.any"):
        update_metadata(copy, thresholds=dict(thresholds, any=-1))
    assert read_metadata(copy).thresholds["any"] == 0.2


def test_bad_input_shapes_are_refused(model_dir):
    classifier = Classifier(model_dir, device="cpu")
    with pytest.raises(ModelError, match=r"shape \(2, 3, 32, 32\)"):
        classifier.detect(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(ModelError, match="NaN"):
        classifier.predict(np.full((1, 3, 64, 64), np.nan, np.float32))
    with pytest.raises(ModelError, match="unknown inference backend 'tensorrt'"):
        Classifier(model_dir, backend="tensorrt")
    with pytest.raises(ModelError, match="unknown device 'tpu'"):
        Classifier(model_dir, device="tpu")
    assert classifier.predict(np.zeros((0, 3, 64, 64), np.float32)).shape == (0, 6)


def test_rejects_weights_with_another_input_pool(copy):
    _edit(copy, input_pool=2)
    with pytest.raises(ModelError, match="input_pool 2"):
        load_model_directory(copy)
    _edit(copy, input_pool=3)
    with pytest.raises(ModelError, match="input_pool is 3"):
        load_model_directory(copy)
