"""`tlab info` / `machine_info`: what this machine offers a run, and why `auto` chooses what it does."""

import json

import pytest
from typer.testing import CliRunner

from transferlab import __version__
from transferlab.cli import app
from transferlab import machine
from transferlab.machine import cache_sizes, machine_info
from transferlab.models import precision
from transferlab.models.precision import candidate_precision, cpu_model, speed_flags
from transferlab.train import bf16_probe
from transferlab.train.bf16_probe import PROBE_FILE, PROBE_VERSION

runner = CliRunner()


@pytest.fixture
def cache(tmp_path):
    """A cache folder with features, a photo database and three kept bf16 timings: one for this machine now, one for
    other threads, one for another CPU."""
    folder = tmp_path / "cache"
    (folder / "features" / "lite0").mkdir(parents=True)
    (folder / "features" / "lite0" / "a.npy").write_bytes(b"x" * 3000)
    (folder / "features" / "b.npy").write_bytes(b"x" * 1000)
    (folder / "photos.sqlite").write_bytes(b"x" * 10)
    here = bf16_probe._this_machine()
    timings = {f"{here}layers|tail|224px|batch 32": {"bf16_speedup": 1.4},
               here.replace("|threads ", "|threads 99") + "layers|tail|224px|batch 32": {"bf16_speedup": 1.2},
               f"v{PROBE_VERSION}|Another CPU|avx2|cap=None|rest": {"bf16_speedup": 0.7}}
    (folder / PROBE_FILE).write_text(json.dumps(timings))
    return folder


def test_info_json_names_the_cpu_the_choices_and_the_cache(cache):
    result = runner.invoke(app, ["info", "--json", "--data-dir", str(cache)])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["versions"]["transferlab"] == __version__ and info["versions"]["torch"]
    assert info["cpu"] == cpu_model() and info["cores"] >= 1
    assert info["auto_inference_precision"] == candidate_precision("auto")
    assert info["auto_training_precision"] in ("timed", "32-true", "bf16-mixed")
    assert info["cache_folder"] == str(cache)
    assert info["cache"]["features"] == 4000 and info["cache"]["photos.sqlite"] == 10
    assert list(info["cache"])[0] == "features"  # largest first
    assert info["bf16_timings_kept"] == 1  # only what applies here now


def test_info_prints_one_line_a_topic(cache):
    result = runner.invoke(app, ["info", "--data-dir", str(cache)])
    assert result.exit_code == 0, result.output
    labels = [line.split("  ")[0].strip() for line in result.output.splitlines()]
    assert labels == ["versions", "CPU", "extensions", "oneDNN cap", "GPU", "fast runtimes", "inference", "training", "cache"]
    assert f"transferlab {__version__}" in result.output and "features 3.9 KiB" in result.output


def test_info_under_an_avx2_cap_says_fp32_and_why(cache, monkeypatch):
    """Kernels capped at AVX2 only emulate bf16, as on an AVX2-only CPU: `auto` stays fp32, and info says so."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    precision.native_precisions.cache_clear()
    try:
        info = machine_info(cache)
    finally:
        precision.native_precisions.cache_clear()
    assert info.isa_cap == "AVX2" and not {"avx512_bf16", "amx_bf16"} & set(info.usable_flags)
    assert info.native_precisions == ["fp32"] and info.auto_inference_precision == "fp32"
    if not info.gpus:
        assert info.auto_training_precision == "32-true"
        assert "32-true" in dict(info.lines())["training"]
    assert dict(info.lines())["oneDNN cap"].startswith("AVX2")


def test_version_and_an_absent_cache_folder(tmp_path):
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"transferlab {__version__}"
    assert cache_sizes(tmp_path / "never-made") == {}


def test_a_cpu_that_cannot_be_read_is_unknown_not_bare(tmp_path, monkeypatch, cache):
    """Without /proc/cpuinfo (macOS, Windows) the extensions are unknown, not absent: config.yaml records null."""
    assert speed_flags(tmp_path / "no-cpuinfo") is None
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f\n")
    assert speed_flags(tmp_path / "cpuinfo") == ["avx2", "avx512f"]
    monkeypatch.setattr(machine, "speed_flags", lambda: None)
    assert dict(machine_info(cache).lines())["extensions"] == "unknown (no /proc/cpuinfo)"


def test_links_in_the_cache_folder_are_not_followed(tmp_path):
    elsewhere = tmp_path / "datasets"
    elsewhere.mkdir()
    (elsewhere / "big.bin").write_bytes(b"x" * 100_000)
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "stanford-dogs").symlink_to(elsewhere)
    assert cache_sizes(folder)["stanford-dogs"] < 1000
