"""The published limits of the two Pascal cards, and how one launch's counts become a time.

Rates (vendor data sheets): P40 (GP102, sm_61) FP32 11.8 TFLOP/s, FP16 1/64 of that, dp4a
47 TOP/s, 346 GB/s; P100 PCIe (GP100, sm_60) FP32 9.3 TFLOP/s, FP16 2x FP32, no dp4a,
732 GB/s. What each card is (name, capability, SMs, memory) is pascal_forge.pascal's.

The time model of one launch is a roofline over three resources, taking the slowest:
- DRAM: the bytes the launch must move at least once (weights, activations, cache), from
  the shapes, at the card's bandwidth;
- the arithmetic issue: fp32 and integer instructions at one per lane per clock (the FP32
  rate / 2), conversions and special functions at 1/4 of that (the CUDA programming guide's
  throughput table for 6.x), dp4a at its rate, plus fp16 instructions at the FP16 rate
  (an fp16 instruction, scalar or half2, takes one slot of the FP16 rate counted as a half2
  FMA, i.e. 4 FLOP); fp16 and fp32 share the dispatch, so the two add up;
- load/store issue: shared and global memory instructions at 1/4 of the lane rate
  (a Pascal SM has one load/store unit per four cores).
"""

from __future__ import annotations

from dataclasses import dataclass

from ... import pascal
from .ptx import OpCounts


@dataclass(frozen=True)
class Card:
    """One Pascal card (pascal.py) with its rates."""

    device: pascal.Card
    fp32_tflops: float
    fp16_tflops: float
    dp4a_tops: float  # 0: no dp4a
    bandwidth_gbs: float

    @property
    def name(self) -> str:
        return self.device.name

    @property
    def capability(self) -> int:
        return self.device.capability

    @property
    def memory_gib(self) -> int:
        return self.device.memory_gib

    @property
    def lane_rate(self) -> float:
        """Simple ALU instructions per second over the whole card (one FMA = 2 FLOP)."""
        return self.fp32_tflops * 1e12 / 2

    @property
    def fp16_rate(self) -> float:
        """fp16 instructions per second (a half2 FMA counts 4 FLOP of the FP16 rate)."""
        return self.fp16_tflops * 1e12 / 4

    @property
    def bandwidth(self) -> float:
        return self.bandwidth_gbs * 1e9

    def compute_seconds(self, counts: OpCounts) -> float:
        alu = counts.fp32_fma + counts.fp32_other + counts.other_alu + 4 * (counts.cvt + counts.sfu)
        seconds = alu / self.lane_rate + counts.fp16 / self.fp16_rate
        if counts.dp4a:
            if not self.dp4a_tops:
                raise ValueError(f"{self.name} has no dp4a")
            seconds += counts.dp4a / (self.dp4a_tops * 1e12 / 8)
        return seconds

    def load_store_seconds(self, counts: OpCounts) -> float:
        instructions = counts.shared_accesses + counts.global_loads + counts.global_stores
        return instructions / (self.lane_rate / 4)


P40 = Card(pascal.P40, 11.8, 11.8 / 64, 47.0, 346.0)
P100 = Card(pascal.P100, 9.3, 18.7, 0.0, 732.0)
CARDS = {"P40": P40, "P100": P100}
