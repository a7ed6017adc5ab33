"""Inference precision: the accuracy gate, the `auto` choice, fp32 fallback, the record, caches kept apart; bf16
training; the decoded-photo cache."""

import importlib.util
import itertools
import math

import numpy as np
import pytest
import torch
import yaml

import transferlab.models.precision as precision_module
import transferlab.models.runtime as runtime_module
from transferlab.config import RunSettings, TrainConfig
from transferlab.data.datasets import PhotoDataset
from transferlab.data.decoded import DecodedStore
from transferlab.data.photo_cache import PhotoCache
from transferlab.data.sources import Sample
from transferlab.experiment import Experiment, train
from transferlab.models.classifier import DataConfig, build_classifier
from transferlab.models.precision import GATE_PHOTOS, MIN_AGREEMENT, candidate_precision, cpu_flags, cpu_model, gate, gate_sample, usable_cpu_flags
from transferlab.models.runtime import FeatureRuntime
from transferlab.train.distributed import cpu_has_bf16, resolve_precision

from conftest import make_image

def _needs_openvino() -> None:
    pytest.importorskip("openvino", reason="reduced precision runs in OpenVINO (the openvino extra)")


# -- the gate -------------------------------------------------------------------------------------------------------


def test_the_gate_keeps_a_precision_that_gives_the_same_answers():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((200, 10))
    labels = logits.argmax(1)
    labels[:20] = (labels[:20] + 1) % 10  # fp32 is 90 % right
    result = gate("bf16", logits, logits + 1e-4 * rng.standard_normal(logits.shape), labels)
    assert result.passed and result.agreement == 1.0 and result.accuracy == result.accuracy_fp32 == 0.9
    assert result.standard_error == pytest.approx(math.sqrt(0.9 * 0.1 / 200))
    assert "kept" in result.reason and f"{200 - result.near_ties} validation photos" in result.reason


def test_the_gate_fails_below_the_agreement_or_beyond_one_standard_error():
    logits = np.eye(10)[np.arange(200) % 10] * 5
    labels = np.arange(200) % 10
    flipped = logits.copy()
    flipped[:3] = np.roll(flipped[:3], 1, axis=1)  # 3 of 200 disagree: 98.5 % < 99 %
    result = gate("bf16", logits, flipped, labels)
    assert not result.passed and result.agreement == pytest.approx(0.985) and "fp32 instead" in result.reason
    one = logits.copy()
    one[:1] = np.roll(one[:1], 1, axis=1)  # 1 of 200: agreement 99.5 %, accuracy 1.0 -> 0.995 = one photo's worth
    assert gate("bf16", logits, one, labels).passed
    assert MIN_AGREEMENT == 0.99


def test_near_ties_may_flip_but_confident_answers_may_not():
    """Photos whose fp32 answer leads by less than NEAR_TIE flip under any perturbation; they do not count against
    the agreement, and the accuracy criterion covers them in aggregate."""
    labels = np.arange(200) % 10
    runner_up = (labels + 1) % 10
    logits = np.eye(10)[labels] * 5
    logits[np.arange(6), runner_up[:6]] = 4.99  # six near-ties, fp32 answers the label by a hair
    reduced = logits.copy()
    reduced[np.arange(6), runner_up[:6]] = 5.01  # the reduced precision flips all six
    truth = labels.copy()
    truth[:3] = runner_up[:3]  # three of them fp32 got wrong: flipping wins three and loses three
    balanced = gate("bf16", logits, reduced, truth)
    assert balanced.near_ties == 6 and balanced.agreement == 1.0 and balanced.agreement_all == pytest.approx(0.97)
    assert balanced.accuracy == balanced.accuracy_fp32 and balanced.passed
    assert not gate("bf16", logits, reduced, labels).passed  # six answers lost: beyond one standard error
    undecided = gate("bf16", np.zeros((50, 10)), np.zeros((50, 10)), np.arange(50) % 10)  # an untrained model
    assert undecided.passed and "none of the 50 validation photos decisively" in undecided.reason
    confident = logits.copy()
    confident[10:13] = np.roll(confident[10:13], 1, axis=1)  # three decisive answers change: 98.5 % of 194
    assert not gate("bf16", logits, confident, labels).passed


def test_the_gate_looks_at_a_seeded_sample_of_many_photos():
    assert list(gate_sample(10, 0)) == list(range(10))
    chosen = gate_sample(5000, 3)
    assert len(chosen) == GATE_PHOTOS and list(chosen) == sorted(set(chosen)) and list(chosen) == list(gate_sample(5000, 3))


# -- auto, CPU features, training precision -------------------------------------------------------------------------


def test_cpu_flags_and_auto(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_bf16 amx_bf16\n")
    assert {"avx2", "amx_bf16"} <= cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == set()
    monkeypatch.setattr(precision_module, "native_precisions", lambda: ("fp32",))
    assert candidate_precision("auto") == "fp32"  # an AVX2-only CPU stays in fp32
    assert candidate_precision("int8") == "int8"
    monkeypatch.setattr(precision_module, "native_precisions", lambda: ("fp32", "bf16", "int8"))
    assert candidate_precision("auto") == "bf16"  # measured faster than int8 where both exist


def test_cpu_model_names_family_and_model(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\ncpu family\t: 25\nmodel\t\t: 17\nmodel name\t: AMD EPYC\n")
    assert cpu_model(info) == "AMD EPYC (family 25, model 17)"  # Zen 4; Zen 5 is family 26 under the same name
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\n")
    assert cpu_model(info) == "Some CPU"
    assert cpu_model(tmp_path / "missing")  # what `platform` knows


def test_usable_flags_follow_onednns_isa_cap(tmp_path, monkeypatch):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse avx2 avx512_vnni avx512_bf16 amx_bf16\n")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    monkeypatch.delenv("DNNL_MAX_CPU_ISA", raising=False)
    assert usable_cpu_flags(info) == cpu_flags(info)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "avx2")  # kernels capped at AVX2 only emulate bf16: as on an EPYC
    assert usable_cpu_flags(info) == {"fpu", "sse", "avx2"}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16")
    assert usable_cpu_flags(info) == {"fpu", "sse", "avx2", "avx512_vnni", "avx512_bf16"}
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "ALL")
    assert usable_cpu_flags(info) == cpu_flags(info)
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")  # the older name counts only where the newer one is unset
    assert "amx_bf16" in usable_cpu_flags(info)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "")
    assert usable_cpu_flags(info) == {"fpu", "sse", "avx2"}


def test_training_precision_auto_follows_the_cpu_and_asks_the_probe_only_there(monkeypatch):
    import transferlab.train.distributed as distributed

    asked = []

    def probe(answer):
        return lambda: asked.append(answer) or answer

    monkeypatch.setattr(distributed, "usable_cpu_flags", lambda: {"avx2"})
    assert resolve_precision("auto", "cpu", probe(True)) == "32-true"
    assert asked == [], "no native bf16: nothing to time"
    monkeypatch.setattr(distributed, "usable_cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert resolve_precision("auto", "cpu", probe(True)) == "bf16-mixed"
    assert resolve_precision("auto", "cpu", probe(False)) == "32-true"
    assert resolve_precision("auto", "cpu") == "32-true"
    assert resolve_precision("auto", "cpu", probe(True), processes=2) == "32-true", "each process would time on its own"
    assert resolve_precision("32", "cpu", probe(True)) == "32-true"
    assert resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert asked == [True, False]


def _fake_timings(monkeypatch, *timings):
    """The probe's timings come from `timings`, one (fp32 s, bf16 s) a call, in a process that has timed nothing yet;
    returns the list of what was timed."""
    import transferlab.train.bf16_probe as probe

    answers, timed = iter(timings), []
    monkeypatch.setattr(probe, "_TIMED", {})
    monkeypatch.setattr(probe, "time_training_steps", lambda model, size, batch, whole: timed.append((size, batch, whole)) or next(answers))
    return timed


def test_bf16_probe_times_what_trains_once_and_keeps_bf16_only_when_clearly_faster(monkeypatch, tmp_path):
    import transferlab.train.bf16_probe as probe
    from transferlab.models.freezing import freeze, unfreeze_last_blocks

    timed = _fake_timings(monkeypatch, (1.0, 0.5), (1.0, 0.95), (1.0, 0.5))
    model, _ = build_classifier("efficientnet_lite0", num_classes=3, pretrained=False)
    freeze(model.backbone)
    head_only = probe.Bf16Probe(model, 224, 64, tmp_path)
    assert not head_only() and head_only.speedup is None and timed == [], "a head alone: nothing of the backbone to time"
    unfreeze_last_blocks(model.backbone, 1)
    tail = probe.Bf16Probe(model, 224, 64, tmp_path)
    assert tail() and tail.speedup == 2.0
    assert timed == [(224, probe.PROBE_BATCH, False)]
    monkeypatch.setattr(probe, "_TIMED", {})  # another process: reads the kept answer
    assert probe.Bf16Probe(model, 224, 64, tmp_path)(), "the kept answer"
    assert len(timed) == 1, "timed once per setup"
    other_classes, _ = build_classifier("efficientnet_lite0", num_classes=7, pretrained=False)
    freeze(other_classes.backbone)
    unfreeze_last_blocks(other_classes.backbone, 1)
    assert probe.Bf16Probe(other_classes, 224, 64, tmp_path)() and len(timed) == 1, "another data set's head: the same setup"
    unfreeze_last_blocks(model.backbone, 2)
    assert not probe.Bf16Probe(model, 224, 64, tmp_path)(), f"1.05x is under {probe.MIN_SPEEDUP}x: fp32 stays"
    assert len(timed) == 2, "another trainable set is another setup"
    (tmp_path / probe.PROBE_FILE).write_text("{not json")
    monkeypatch.setattr(probe, "_TIMED", {})
    assert probe.Bf16Probe(model, 96, 8, tmp_path, whole_model=True)()
    assert timed[-1] == (96, 8, True), "a damaged file is timed again, not an error; the trunk in PyTorch is timed too"


def test_bf16_probe_gives_one_answer_a_process_even_where_it_cannot_keep_it(monkeypatch, tmp_path):
    import transferlab.train.bf16_probe as probe
    from transferlab.models.freezing import freeze, unfreeze_last_blocks

    def read_only(path, data, durable=True):
        raise PermissionError(13, "Permission denied", str(path))

    timed = _fake_timings(monkeypatch, (1.0, 0.8), (1.0, 1.2))
    monkeypatch.setattr(probe, "write_atomic", read_only)
    model, _ = build_classifier("efficientnet_lite0", num_classes=3, pretrained=False)
    freeze(model.backbone)
    unfreeze_last_blocks(model.backbone, 1)
    answers = [probe.Bf16Probe(model, 128, 16, tmp_path)() for _ in range(3)]
    assert answers == [True] * 3 and len(timed) == 1, "the kept outputs' dtype and the Trainer's precision must agree"


def test_bf16_probe_times_real_steps_and_leaves_the_model_and_random_state_alone():
    from transferlab.models.freezing import freeze, unfreeze_last_blocks
    from transferlab.train.bf16_probe import time_training_steps

    model, _ = build_classifier("efficientnet_lite0", num_classes=3, pretrained=False)
    for blocks in (1, None):  # finetune's tail after the trunk, and the whole classifier (scratch)
        freeze(model.backbone)
        if blocks:
            unfreeze_last_blocks(model.backbone, blocks)
        else:
            for parameter in model.parameters():
                parameter.requires_grad_(True)
        state = {name: value.clone() for name, value in model.state_dict().items()}
        rng = torch.get_rng_state()
        fp32_s, bf16_s = time_training_steps(model, 64, 4, whole_model=blocks is None)
        assert fp32_s > 0 and bf16_s > 0
        assert torch.equal(torch.get_rng_state(), rng), "a run draws the same numbers whether it timed or read the answer"
        assert all(torch.equal(value, state[name]) for name, value in model.state_dict().items()), "BatchNorm statistics untouched"
        assert all(parameter.grad is None for parameter in model.parameters())


# -- the gate in a run: kept, or fp32 with the reason ---------------------------------------------------------------


def _perturbed_reduced_precision(monkeypatch) -> None:
    """OpenVINO in any reduced precision passes its probe, then shifts every feature by one place: a classifier
    trained on the shifted features answers differently on fp32 ones."""
    real = runtime_module.openvino_runtime

    def perturbed(onnx_path, threads, precision="fp32", calibration=None):
        runtime = real(onnx_path, threads, precision, calibration)
        if precision == "fp32":
            return runtime
        calls = itertools.count()
        return FeatureRuntime(runtime.name, lambda images: runtime.run(images) if next(calls) == 0 else np.roll(runtime.run(images), 7, axis=1), precision)

    monkeypatch.setattr(runtime_module, "openvino_runtime", perturbed)


def _frozen(woof_mini, out, **settings):
    return train(TrainConfig(data=str(woof_mini), out=str(out), strategy="frozen", epochs=3, augment="none", image_size=128, **settings))


@pytest.mark.slow
def test_a_reduced_precision_that_changes_answers_falls_back_to_fp32(woof_mini, tmp_path, monkeypatch, caplog):
    _needs_openvino()
    _perturbed_reduced_precision(monkeypatch)
    run = _frozen(woof_mini, tmp_path / "run", inference_precision="bf16", data_dir=str(tmp_path / "cache"))
    record = run.read_metrics()["frozen"]["inference_precision"]
    assert record["requested"] == "bf16" and record["used"] == "fp32"
    assert not record["gate"]["passed"] and record["gate"]["agreement"] < MIN_AGREEMENT and record["gate"]["photos"] == 100
    assert "not used: fp32 instead" in caplog.text and "training it again" in caplog.text
    assert run.read_metrics()["frozen"]["val_acc"] > 0.7  # retrained on fp32 features
    assert yaml.safe_load(run.config_file.read_text())["inference_precision_used"] == {"frozen": "fp32"}
    stores = sorted(p.name for p in (tmp_path / "cache" / "features").iterdir() if p.is_dir())
    assert len(stores) == 2 and stores[0] + "-bf16" == stores[1]  # each precision's features in a folder of its own


@pytest.mark.slow
def test_a_reduced_precision_that_cannot_run_says_why_in_metrics_and_report(woof_mini, tmp_path, monkeypatch):
    """No gate judges a precision the runtime refuses (its probe points elsewhere): the record says why instead."""
    _needs_openvino()
    monkeypatch.setattr(runtime_module, "REDUCED_MIN_COSINE", 1.01)  # no reduced precision passes the probe
    run = _frozen(woof_mini, tmp_path / "run", inference_precision="bf16", data_dir=str(tmp_path / "cache"))
    record = run.read_metrics()["frozen"]["inference_precision"]
    assert record["used"] == "fp32" and record["gate"] is None
    assert "bf16 points elsewhere than PyTorch fp32" in record["refused"] and "1.01 needed" in record["refused"]
    html, _ = Experiment.open(run.path).report()
    assert "bf16 asked for: the model could not run in bf16 here: openvino in bf16 points elsewhere" in html.read_text()


@pytest.mark.slow
def test_a_reduced_precision_that_passes_is_kept_and_recorded_everywhere(woof_mini, tmp_path, monkeypatch):
    _needs_openvino()
    run = _frozen(woof_mini, tmp_path / "run", inference_precision="bf16", data_dir=str(tmp_path / "cache"))
    record = run.read_metrics()["frozen"]["inference_precision"]
    assert record["used"] == "bf16" and record["gate"]["passed"] and record["gate"]["agreement"] >= MIN_AGREEMENT
    assert yaml.safe_load(run.config_file.read_text())["inference_precision_used"] == {"frozen": "bf16"}
    experiment = Experiment.open(run.path)
    results = experiment.evaluate(precision="fp32")
    assert results["frozen"]["inference_precision"] == "fp32"
    from transferlab.inference import load

    assert load(run.path, runtime="auto", precision="bf16").precision == "bf16"
    assert load(run.path, runtime="torch").precision == "fp32"
    html, _ = experiment.report()
    assert "bf16" in html.read_text() and "agrees with fp32" in html.read_text()
    if importlib.util.find_spec("nncf"):  # int8 quantized on the run's training photos, as the gate and predict do
        from transferlab.evaluate import evaluation

        monkeypatch.setattr(evaluation, "FAST_RUNTIME_MIN_PHOTOS", 0)  # woof-mini's 100 would run in PyTorch
        results, _ = evaluation.evaluate_run(run.path, precision="int8", export_dir=tmp_path / "runtimes")
        assert results["frozen"]["inference_precision"] == "int8"


def test_features_of_different_precisions_never_share_a_folder(tmp_path):
    from transferlab.models.classifier import build_classifier
    from transferlab.train.feature_store import store_dir

    model, _ = build_classifier("efficientnet_lite0", 3, False)
    config = DataConfig(64, "bicubic", 0.875, (0.5,) * 3, (0.5,) * 3)
    folders = {p: store_dir(tmp_path, "efficientnet_lite0", model.backbone, config, [], p) for p in ("fp32", "bf16", "int8")}
    assert len(set(folders.values())) == 3 and folders["bf16"].name == folders["fp32"].name + "-bf16"


def test_int8_features_of_each_weight_width_have_their_own_folder_key_and_record(monkeypatch, tmp_path):
    from transferlab.train.feature_store import settings_key, store_dir
    from transferlab.train.precision_gate import precision_record

    config = DataConfig(64, "bicubic", 0.875, (0.5,) * 3, (0.5,) * 3)
    backbone = torch.nn.Conv2d(3, 4, 1)
    folders, keys, records = {}, {}, {}
    for bits, flags in ((7, {"avx2"}), (8, {"avx2", "avx_vnni"})):
        monkeypatch.setattr(precision_module, "usable_cpu_flags", lambda flags=flags: flags)
        folders[bits] = store_dir(tmp_path, "efficientnet_lite0", backbone, config, [], "int8").name
        keys[bits] = settings_key(RunSettings(data=str(tmp_path), out=str(tmp_path / "run"), inference_precision="int8"))
        records[bits] = precision_record("int8", "int8", None)["int8_weight_bits"]
    assert folders[8].endswith("-int8") and folders[7] == folders[8] + "-w7"  # 8-bit folders keep their earlier name
    assert keys[7] != keys[8]  # a folder remembered for one width is not the other's
    assert records == {7: 7, 8: 8} and "int8_weight_bits" not in precision_record("int8", "fp32", None)


# -- bf16 training ----------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bf16 (AMX / AVX512-BF16): bf16 training would be emulated")
def test_bf16_training_follows_the_fp32_curve(woof_mini, tmp_path):
    base = _frozen(woof_mini, tmp_path / "frozen", data_dir=str(tmp_path / "cache"))
    finals = {}
    for precision in ("32", "bf16-mixed"):
        run = train(TrainConfig(
            data=str(woof_mini), out=str(tmp_path / precision), strategy="finetune", epochs=3, lr=1e-4, augment="none",
            image_size=128, init=str(base.path), precision=precision, data_dir=str(tmp_path / "cache"),
        ))
        history = run.read_history("finetune")
        assert history[-1]["train_loss"] < history[0]["train_loss"]  # the same trend: still learning
        assert run.read_metrics()["finetune"]["training_precision"] == precision.replace("32", "32-true")
        finals[precision] = history[-1]["val_acc"]
    standard_error = math.sqrt(finals["32"] * (1 - finals["32"]) / 100)
    assert abs(finals["bf16-mixed"] - finals["32"]) <= 2 * max(standard_error, 0.01)


# -- photos decoded once ------------------------------------------------------------------------------------------------


def test_decoded_photos_are_the_fresh_decode_and_follow_a_changed_photo(tmp_path):
    import os

    photo = make_image(tmp_path / "a" / "x.jpg", size=(90, 70), seed=1)
    samples = [Sample(photo, 0)]
    config = DataConfig(32, "bicubic", 0.875, (0.5,) * 3, (0.5,) * 3)
    store = DecodedStore.for_config(config, tmp_path / "cache")
    cache = PhotoCache(tmp_path / "photos.sqlite")
    fresh = PhotoDataset(samples, config).load_uint8(0)
    first = PhotoDataset(samples, config, decoded=store, photos=cache).load_uint8(0)
    assert len(list(store.root.rglob("*.npy"))) == 1
    again = PhotoDataset(samples, config, decoded=store, photos=cache).load_uint8(0)
    assert torch.equal(first, fresh) and torch.equal(again, fresh) and again.dtype == torch.uint8

    make_image(photo, size=(90, 70), seed=2)  # the photo changes: new bytes, new hash
    os.utime(photo, ns=(photo.stat().st_mtime_ns + 10**9,) * 2)
    changed = PhotoDataset(samples, config, decoded=store, photos=cache).load_uint8(0)
    assert torch.equal(changed, PhotoDataset(samples, config).load_uint8(0)) and not torch.equal(changed, fresh)
    assert len(list(store.root.rglob("*.npy"))) == 2

    store._path(cache.hashes([photo])[0]).write_bytes(b"damaged")  # a damaged entry is decoded again
    assert torch.equal(PhotoDataset(samples, config, decoded=store, photos=cache).load_uint8(0), changed)


def test_after_reduced_precision_inference_signal_handlers_have_room(tmp_path):
    """OpenVINO's bf16 path leaves its thread a 20 KB alternate signal stack, too small for a signal frame with AMX
    state: Python's handlers (SIGINT, DataLoader's SIGCHLD) overflowed it into the heap. The runtime enlarges it."""
    _needs_openvino()
    import ctypes

    from transferlab.models.classifier import build_classifier
    from transferlab.models.runtime import SIGNAL_STACK_BYTES, SS_DISABLE, _SignalStack, feature_runtime

    model, _ = build_classifier("efficientnet_lite0", 3, True)
    for precision in ("fp32", "bf16"):
        feature_runtime(model.backbone, 64, tmp_path, "openvino", 2, precision=precision).run(np.zeros((2, 3, 64, 64), np.float32))
        current = _SignalStack()
        ctypes.CDLL(None).sigaltstack(None, ctypes.byref(current))
        assert current.ss_flags & SS_DISABLE or current.ss_size >= SIGNAL_STACK_BYTES


def test_int8_is_quantized_on_training_photos_and_needs_them(woof_mini, tmp_path):
    _needs_openvino()
    pytest.importorskip("nncf", reason="int8 quantization needs NNCF (the int8 extra)")
    from transferlab.data.sources import folder_source
    from transferlab.models.classifier import build_classifier, data_config
    from transferlab.models.runtime import feature_runtime, min_cosine, torch_runtime
    from transferlab.train.fit import calibration_photos

    model, _ = build_classifier("efficientnet_lite0", 10, True)
    config = data_config(model.backbone, 96)
    index = folder_source(woof_mini)
    runtime = feature_runtime(model.backbone, 96, tmp_path, "openvino", 2, precision="int8",
                              calibration=calibration_photos(index.train[:64], config, 0))
    assert runtime.precision == "int8"
    photos = torch.stack([PhotoDataset(index.val[:16], config)[i][0] for i in range(16)]).numpy()
    assert min_cosine(runtime.run(photos), torch_runtime(model.backbone).run(photos)) > 0.9
    assert feature_runtime(model.backbone, 96, tmp_path, "openvino", 2, precision="int8").precision == "fp32"  # no photos
    assert feature_runtime(model.backbone, 96, tmp_path, "openvino", 2, precision="int8", calibration=lambda: []).precision == "fp32"


@pytest.mark.parametrize("flags, bits", [({"avx2"}, 7), ({"avx2", "avx_vnni"}, 8), ({"avx2", "avx512f", "avx512_vnni"}, 8)])
def test_int8_weights_take_7_bits_where_the_cpu_has_no_vnni(monkeypatch, tmp_path, flags, bits):
    """Without VNNI, AVX2's int8 multiply-add saturates on 8-bit weights: on a Zen 3 EPYC, Lite0's int8 features
    pointed elsewhere (cosine 0.85 to fp32; the runtime's probe refused them) until NNCF fixed overflow on every layer."""
    nncf = pytest.importorskip("nncf", reason="int8 quantization needs NNCF (the int8 extra)")
    pytest.importorskip("openvino", reason="int8 runs in OpenVINO (the openvino extra)")
    from nncf.quantization.advanced_parameters import OverflowFix

    monkeypatch.setattr(precision_module, "usable_cpu_flags", lambda: flags)
    assert precision_module.int8_weight_bits() == bits
    asked = {}
    monkeypatch.setattr(nncf, "quantize", lambda model, dataset, **options: asked.update(options))
    monkeypatch.setattr("openvino.Core.read_model", lambda self, path: path)
    runtime_module.quantized_model(tmp_path / "model.onnx", lambda: [np.zeros((1, 3, 8, 8), np.float32)])
    assert asked["advanced_parameters"].overflow_fix == (OverflowFix.ENABLE if bits == 7 else OverflowFix.FIRST_LAYER)


def test_the_gate_on_a_whole_classifier_quantizes_int8_on_training_photos(woof_mini, tmp_path, monkeypatch):
    """Without calibration photos the gate could not build int8: a finetune asked for int8 was never judged, only
    trained again in fp32."""
    _needs_openvino()
    pytest.importorskip("nncf", reason="int8 quantization needs NNCF (the int8 extra)")
    from transferlab.data.sources import folder_source
    from transferlab.train.precision_gate import gate_on_photos

    index = folder_source(woof_mini)
    model, _ = build_classifier("efficientnet_lite0", len(index.classes), True)
    settings = RunSettings(data=str(woof_mini), out=str(tmp_path / "run"), data_dir=str(tmp_path / "cache"))
    quantized = []
    real = runtime_module.quantized_model
    monkeypatch.setattr(runtime_module, "quantized_model", lambda path, calibration: quantized.append(path) or real(path, calibration))
    result = gate_on_photos(settings, model, index.val[:40], "int8", 96, index.train[:64])
    assert len(quantized) == 1 and result.photos == 40 and 0 <= result.agreement <= 1


def test_the_audit_quantizes_int8_on_the_training_photos_as_training_does(tmp_path, monkeypatch):
    """Its features share a folder with a frozen run's: they must come from the same int8 model."""
    _needs_openvino()
    pytest.importorskip("nncf", reason="int8 quantization needs NNCF (the int8 extra)")
    import transferlab.train.fit as fit_module
    from transferlab.audits.features import photo_features
    from transferlab.data.sources import folder_source

    for seed, (split, label, i) in enumerate((s, c, i) for s, n in (("train", 4), ("val", 2)) for c in "ab" for i in range(n)):
        make_image(tmp_path / "photos" / split / label / f"{i}.png", (40, 40), seed=seed)
    index = folder_source(tmp_path / "photos")
    calibrated_on = []
    real = fit_module.calibration_photos
    monkeypatch.setattr(fit_module, "calibration_photos", lambda samples, *rest: calibrated_on.append(list(samples)) or real(samples, *rest))
    settings = RunSettings(data=str(tmp_path / "photos"), out=str(tmp_path / "run"), data_dir=str(tmp_path / "cache"),
                           inference_precision="int8", image_size=64)
    assert len(photo_features(settings, index).samples) == 12
    assert calibrated_on and all(photos == list(index.train) for photos in calibrated_on)  # int8, then fp32 if refused


def test_an_unknown_precision_is_one_line_naming_the_choices(tmp_path):
    from typer.testing import CliRunner

    from transferlab.cli import app

    for command in (["evaluate", str(tmp_path)], ["predict", str(tmp_path), "x.jpg"]):
        result = CliRunner().invoke(app, [*command, "--inference-precision", "bf17"])
        assert result.exit_code == 2 and "expected auto, fp32, bf16, int8 (got 'bf17')" in result.output, result.output
