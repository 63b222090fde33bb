"""Model FLOPs utilization: the FLOP/s a run achieves over the device's peak.

MFU = tokens/s x FLOPs per token / (peak FLOP/s x ranks), with FLOPs per token from
PaLM's formula (``GPT.flops_per_token``: 6N + 12 L H Q T, as nanoGPT's ``estimate_mfu``),
so the figures line up with nanoGPT's and PaLM's. The peak is the device's dense bf16
tensor-core rate (no 2:4 sparsity), looked up by the exact name
``torch.cuda.get_device_name`` reports; ``peak_tflops`` overrides it, and an unknown
device gets no MFU rather than a neighbour's peak (a substring match gave the H100 PCIe
the SXM part's 989 and the L40 the L4's 121).
"""

from __future__ import annotations

# dense bf16 tensor-core TFLOP/s, from each part's datasheet (half the "with sparsity" figure)
PEAK_TFLOPS = {
    # Hopper
    "NVIDIA H100 80GB HBM3": 989.0,        # H100 SXM5
    "NVIDIA H100 PCIe": 756.0,
    "NVIDIA H100 NVL": 835.0,
    "NVIDIA H200": 989.0,                  # H200 SXM
    "NVIDIA H200 NVL": 835.0,
    "NVIDIA GH200 480GB": 989.0,
    "NVIDIA H800": 989.0,                  # H800 SXM5: H100's compute, less NVLink bandwidth
    "NVIDIA H800 PCIe": 756.0,
    "NVIDIA H20": 148.0,
    # Blackwell
    "NVIDIA B200": 2250.0,
    "NVIDIA GB200": 2500.0,
    # Ampere
    "NVIDIA A100-SXM4-80GB": 312.0,
    "NVIDIA A100-SXM4-40GB": 312.0,
    "NVIDIA A100 80GB PCIe": 312.0,
    "NVIDIA A100-PCIE-40GB": 312.0,
    "NVIDIA A800-SXM4-80GB": 312.0,
    "NVIDIA A800 80GB PCIe": 312.0,
    "NVIDIA A40": 149.7,
    "NVIDIA A10": 125.0,
    # Ada
    "NVIDIA L40S": 362.0,
    "NVIDIA L40": 181.0,
    "NVIDIA L4": 121.0,
    "NVIDIA GeForce RTX 4090": 165.2,      # bf16 with fp32 accumulate (Ada whitepaper)
    # AMD Instinct (ROCm builds of torch report these through torch.cuda)
    "AMD Instinct MI300X": 1307.4,
    "AMD Instinct MI325X": 1307.4,
    "AMD Instinct MI250X": 383.0,
}


def device_peak_tflops(name: str) -> float | None:
    """The dense bf16 peak of the device called ``name`` (exactly), or None."""
    return PEAK_TFLOPS.get(name.strip())


def peak_flops(device: str, peak_tflops: float = 0.0) -> tuple[float | None, str]:
    """(FLOP/s of one device for MFU, where the figure came from). ``peak_tflops`` > 0
    wins; else a known GPU's; else (None, why not)."""
    if peak_tflops > 0:
        return peak_tflops * 1e12, f"peak {peak_tflops:g} TFLOP/s (peak_tflops)"
    if not device.startswith("cuda"):
        return None, "no MFU on CPU (set peak_tflops to get one)"
    import torch

    name = torch.cuda.get_device_name(torch.device(device))
    peak = device_peak_tflops(name)
    if peak is None:
        return None, f"no MFU: the peak of {name!r} is not known (use --peak-tflops)"
    return peak * 1e12, f"{name}: {peak:g} TFLOP/s dense bf16"
