"""trainer.precision=auto: bf16-mixed on a GPU; on the CPU when trainer.cpu_bf16 allows it (the default) and the CPU
computes in bf16 natively; fp32 otherwise. The hardware is mocked: the answer must not depend on this machine."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from facebias.training import task


def trainer_cfg(**values):
    return OmegaConf.create({"accelerator": "auto", "precision": "auto", **values})


@pytest.fixture
def hardware(monkeypatch):
    """Set (cuda available, CPU has native bf16) for resolve_precision."""
    def set_(cuda: bool, cpu_bf16: bool):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
        monkeypatch.setattr(task, "cpu_supports_bf16", lambda: cpu_bf16)
    return set_


@pytest.mark.parametrize(("cuda", "native", "accelerator", "allowed", "expected"), [
    (True, False, "auto", False, "bf16-mixed"),   # a GPU: bf16 as before
    (True, True, "gpu", False, "bf16-mixed"),
    (True, True, "cpu", False, "32-true"),        # a GPU present but the run asks for the CPU
    (True, True, "cpu", True, "bf16-mixed"),      # ... and allows CPU bf16 on a CPU that has it
    (False, True, "auto", False, "32-true"),      # bf16 CPU, not allowed (trainer.cpu_bf16=false): fp32
    (False, True, "auto", True, "bf16-mixed"),    # bf16 CPU, allowed
    (False, True, "cpu", True, "bf16-mixed"),
    (False, False, "auto", True, "32-true"),      # allowed, but the CPU would only emulate bf16
    (False, False, "cpu", False, "32-true"),
])
def test_auto_precision(hardware, cuda, native, accelerator, allowed, expected):
    hardware(cuda, native)
    assert task.resolve_precision(trainer_cfg(accelerator=accelerator, cpu_bf16=allowed)) == expected


def test_auto_without_the_flag_is_fp32_on_cpu(hardware):
    hardware(False, True)  # a config written before cpu_bf16 existed
    assert task.resolve_precision(OmegaConf.create({"accelerator": "cpu", "precision": "auto"})) == "32-true"


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "16-mixed", "bf16-true"])
def test_explicit_precision_is_kept(hardware, precision):
    hardware(False, False)
    assert task.resolve_precision(trainer_cfg(precision=precision, cpu_bf16=False)) == precision


def test_native_bf16_is_not_probed_unless_allowed(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    def probe():
        raise AssertionError("probed although trainer.cpu_bf16 is false")

    monkeypatch.setattr(task, "cpu_supports_bf16", probe)
    assert task.resolve_precision(trainer_cfg(cpu_bf16=False)) == "32-true"


X86_FLAGS = "fpu vme de pse tsc msr pae mce cx8 apic sse sse2 avx avx2 avx512f avx512bw avx512vl"
CPUINFO = {
    "x86 AVX512 without BF16": (f"processor\t: 0\nflags\t\t: {X86_FLAGS}\n", False),
    "x86 AVX512-BF16": (f"processor\t: 0\nflags\t\t: {X86_FLAGS} avx512_bf16 avx512_vnni\n", True),
    "x86 AMX-BF16": (f"processor\t: 0\nflags\t\t: {X86_FLAGS} amx_bf16 amx_tile\n", True),
    "Arm with BF16": ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve bf16 i8mm\n", True),
    "Arm without BF16": ("processor\t: 0\nFeatures\t: fp asimd evtstrm aes\n", False),
    # a flag *name* that merely contains bf16 in another field must not count
    "bf16 outside the flags": ("processor\t: 0\nmodel name\t: avx512_bf16 lookalike\nflags\t\t: fpu\n", False),
}


@pytest.mark.parametrize("name", list(CPUINFO))
def test_cpu_bf16_from_cpuinfo(tmp_path, monkeypatch, name):
    text, expected = CPUINFO[name]
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    assert task.cpu_supports_bf16(path) is expected


def test_cpu_bf16_from_torch_probe(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert task.cpu_supports_bf16(tmp_path / "no-cpuinfo") is True  # e.g. macOS/Windows: no /proc


def test_cpu_bf16_unknown_is_false(tmp_path, monkeypatch):
    def broken():
        raise RuntimeError("cpuinfo failed to initialise")

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", broken, raising=False)
    assert task.cpu_supports_bf16(tmp_path / "no-cpuinfo") is False
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")  # older torch: no probe at all
    assert task.cpu_supports_bf16(tmp_path / "no-cpuinfo") is False


def test_default_config_trains_in_bf16_on_a_bf16_cpu(hardware):
    from conftest import compose

    hardware(False, True)
    assert task.resolve_precision(compose(["+experiment=p80"]).trainer) == "bf16-mixed"
    hardware(False, False)
    assert task.resolve_precision(compose(["+experiment=p80"]).trainer) == "32-true"


def test_scores_are_fp32_inside_a_bf16_autocast():
    """Validation and the final metrics run inside Lightning's bf16 autocast: they must equal fp32 scoring
    (what evaluate.py does), or a bf16 run's metrics.json and its evaluation would disagree."""
    from facebias.models.classifier import AttributeClassifier

    torch.manual_seed(0)
    model = AttributeClassifier(backbone="small_cnn").eval()
    batch = {"image": torch.randint(0, 256, (8, 32, 32, 3), dtype=torch.uint8),
             "target": torch.zeros(8, 1), "protected": torch.zeros(8), "concept": torch.zeros(8),
             "row": torch.arange(8)}
    with torch.inference_mode():
        fp32 = model.predict_step(batch, 0)["logit"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            inside = model.predict_step(batch, 0)["logit"]
            raw = model(model.preprocess(batch)["image"])
    assert inside.dtype == torch.float32 and torch.equal(inside, fp32)
    assert raw.dtype == torch.bfloat16  # the autocast is live: without the guard the scores would be bf16
