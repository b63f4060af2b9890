"""The MFU peak: configured, a GPU's datasheet figure, or a measurement cached per machine; MFU <= 1."""
import json

import pytest
import torch

from uer.errors import UerError
from uer.train import flops
from uer.train.config import TrainerConfig, check_trainer
from uer.train.flops import Peak, spec_peak

CPU = torch.device("cpu")


def no_measurement(*args, **kwargs):
    raise AssertionError("the peak was measured although it should not have been")


@pytest.mark.parametrize("name, dtype, tflops", [
    ("NVIDIA H100 80GB HBM3", torch.bfloat16, 989.0), ("NVIDIA H100 PCIe", torch.bfloat16, 756.0),
    ("NVIDIA H200", torch.float32, 67.0), ("NVIDIA A100-SXM4-80GB", torch.float16, 312.0),
    ("NVIDIA L4", torch.bfloat16, 121.0), ("NVIDIA L40S", torch.bfloat16, 362.0), ("Tesla T4", torch.float32, None),
])
def test_datasheet_peaks_by_device_name(name, dtype, tflops):
    assert spec_peak(name, dtype) == (tflops and tflops * 1e12)


def test_a_configured_peak_is_used_as_is_and_a_faster_window_caps_mfu_at_one(tmp_path, monkeypatch):
    monkeypatch.setattr(flops, "peak_flops", no_measurement)
    peak = Peak(CPU, torch.float32, tflops=2.0, cache=tmp_path / "peaks.json")
    assert peak.flops == 2e12 and peak.mfu(1e12) == 0.5
    assert peak.mfu(3e12) == 1.0 and peak.mfu(1.5e12) == 0.5  # raised to 3e12 for the rest of the run
    assert not (tmp_path / "peaks.json").exists()  # a configured peak is not a measurement


def test_a_measured_peak_is_cached_per_machine_and_raised_by_a_faster_window(tmp_path, monkeypatch):
    cache = tmp_path / "peaks.json"
    monkeypatch.setattr(flops, "peak_flops", lambda device, dtype: 4e9)
    first = Peak(CPU, torch.float32, cache=cache)
    assert first.flops == 4e9 and json.loads(cache.read_text()) == {first.key: 4e9}
    monkeypatch.setattr(flops, "peak_flops", no_measurement)
    assert Peak(CPU, torch.float32, cache=cache).flops == 4e9  # read back, not measured again
    assert first.mfu(8e9) == 1.0 and Peak(CPU, torch.float32, cache=cache).flops == 8e9
    with pytest.raises(AssertionError):  # another precision is another entry
        Peak(CPU, torch.bfloat16, cache=cache)


def test_peak_tflops_must_be_positive():
    with pytest.raises(UerError, match="trainer.peak_tflops=-1"):
        check_trainer(TrainerConfig(peak_tflops=-1))
    check_trainer(TrainerConfig(peak_tflops=312.0))
