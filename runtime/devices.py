"""Accelerators the memory planner and the MFU metric know: memory and peak dense bf16 throughput per device.

One *device* is what one rank drives: a whole GPU, or one GCD (graphics compute die) of an AMD MI250X, which
ROCm exposes as a separate GPU (a LUMI-G node has 4 MI250X = 8 GCDs = 8 ranks). Every figure below is per device.

| key | memory | peak dense bf16 | source |
| --- | --- | --- | --- |
| mi250x | 64 GiB | 191.5 TFLOP/s | AMD Instinct MI250X data sheet: 128 GB HBM2e and 383 TFLOP/s bf16 per package of two GCDs |
| mi300x | 192 GiB | 1307.4 TFLOP/s | AMD Instinct MI300X data sheet (dense; 2614.9 is with sparsity) |
| a100-80gb | 80 GiB | 312 TFLOP/s | NVIDIA A100 data sheet (dense; 624 is with sparsity) |
| a100-40gb | 40 GiB | 312 TFLOP/s | NVIDIA A100 data sheet |
| h100-sxm | 80 GiB | 989.4 TFLOP/s | NVIDIA H100 data sheet, SXM5 (1979 is with sparsity) |
| h100-pcie | 80 GiB | 756 TFLOP/s | NVIDIA H100 data sheet, PCIe (1513 is with sparsity) |
| h200 | 141 GiB | 989.4 TFLOP/s | NVIDIA H200 data sheet (same compute as H100 SXM) |
| cpu | host RAM | unknown | memory read from /proc/meminfo; no peak figure (MFU is not defined) |

Vendors write the HBM capacities as "GB" but they are binary sizes (an "80GB" H100 reports 79.2 GiB to
`torch.cuda.get_device_properties`, the rest being reserved by the driver); the planner's safety margin absorbs that
difference. The peak figures are the vendors' theoretical dense (no structured sparsity) bf16 matrix throughput;
achieved model FLOP utilisation (MFU) is measured against them.

Any entry can be overridden on the planner's command line (`--gpu-memory-gib`, `--peak-tflops`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

from data.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Device:
    name: str
    memory_gib: float | None  # None: read at run time (cpu)
    peak_tflops: float | None  # dense bf16, per device; None: unknown
    description: str


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device("mi250x", 64.0, 191.5, "AMD Instinct MI250X, one GCD (half a package)"),
        Device("mi300x", 192.0, 1307.4, "AMD Instinct MI300X"),
        Device("a100-80gb", 80.0, 312.0, "NVIDIA A100 80GB"),
        Device("a100-40gb", 40.0, 312.0, "NVIDIA A100 40GB"),
        Device("h100-sxm", 80.0, 989.4, "NVIDIA H100 SXM5 80GB"),
        Device("h100-pcie", 80.0, 756.0, "NVIDIA H100 PCIe 80GB"),
        Device("h200", 141.0, 989.4, "NVIDIA H200 141GB"),
        Device("cpu", None, None, "host CPU (memory = physical RAM)"),
    )
}

# torch.cuda.get_device_name() -> table key; first match wins (patterns are searched case-insensitively).
_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"mi250", "mi250x"),  # "AMD Instinct MI250X", "AMD Instinct MI250X / MI250"
    (r"mi300x", "mi300x"),  # "AMD Instinct MI300X"
    (r"h200", "h200"),  # "NVIDIA H200", "NVIDIA H200 NVL"
    (r"h100.*pcie", "h100-pcie"),  # "NVIDIA H100 PCIe"
    (r"h100", "h100-sxm"),  # "NVIDIA H100 80GB HBM3"
    (r"a100.*40\s*gb", "a100-40gb"),  # "NVIDIA A100-SXM4-40GB", "NVIDIA A100-PCIE-40GB"
    (r"a100", "a100-80gb"),  # "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe"
)


def lookup(name: str) -> Device:
    """The table entry for `name` (a key, case-insensitive, or a torch device name); ValueError if unknown."""
    key = name.strip().lower()
    if key in DEVICES:
        return DEVICES[key]
    mapped = device_key_for_name(name)
    if mapped is not None:
        return DEVICES[mapped]
    raise ConfigError(
        f"unknown device {name!r}; known: {', '.join(DEVICES)} (or give both --gpu-memory-gib and --peak-tflops)"
    )


def device_key_for_name(name: str) -> str | None:
    """Map a marketing/driver name ("NVIDIA H100 80GB HBM3", "AMD Instinct MI250X") to a table key, or None."""
    lowered = name.lower()
    if lowered.strip() in DEVICES:
        return lowered.strip()
    for pattern, key in _NAME_PATTERNS:
        if re.search(pattern, lowered):
            return key
    return None


def peak_flops(device_name: str) -> float | None:
    """Peak dense bf16 FLOP/s of one device (a table key or a torch device name); None when unknown or CPU."""
    key = device_key_for_name(device_name)
    if key is None:
        return None
    tflops = DEVICES[key].peak_tflops
    return None if tflops is None else tflops * 1e12


def detect_device_name(torch_device: Any) -> str:
    """The table key of a torch device ("cpu", "mi250x", "h100-sxm", ...).

    CUDA/ROCm devices are identified by `torch.cuda.get_device_name`; a GPU missing from the table returns its
    driver name unchanged (so `peak_flops` gives None for it and the caller can report MFU as unknown).
    """
    import torch

    device = torch.device(torch_device) if not isinstance(torch_device, torch.device) else torch_device
    if device.type != "cuda":
        return "cpu" if device.type == "cpu" else device.type
    name = torch.cuda.get_device_name(device)
    return device_key_for_name(name) or name


def host_memory_gib() -> float:
    """Physical RAM of this machine (Linux /proc/meminfo; os.sysconf elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024 / 2**30
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
