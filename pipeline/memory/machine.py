"""This machine's GPU memory and host RAM, as the planner needs them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30


@dataclass(frozen=True)
class Machine:
    vram_bytes: int
    """GPU memory to plan with (0: no CUDA GPU)."""
    ram_bytes: int
    gpu: str = ""


def host_ram(*, available: bool) -> int:
    """Total host RAM, or what is available now (Linux's MemAvailable: free plus reclaimable
    page cache), in bytes."""
    meminfo = Path("/proc/meminfo")
    if available and meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    pages = os.sysconf("SC_AVPHYS_PAGES" if available else "SC_PHYS_PAGES")
    return int(pages) * int(os.sysconf("SC_PAGE_SIZE"))


def this_machine(*, free: bool = False) -> Machine:
    """The CUDA device's memory (free now, or in total) and host RAM (available now, or in
    total). No torch or no CUDA: a machine without a GPU."""
    ram = host_ram(available=free)
    try:
        import torch
    except ImportError:
        return Machine(0, ram)
    if not torch.cuda.is_available():
        return Machine(0, ram)
    free_bytes, total_bytes = torch.cuda.mem_get_info()
    return Machine(free_bytes if free else total_bytes, ram, torch.cuda.get_device_name())
