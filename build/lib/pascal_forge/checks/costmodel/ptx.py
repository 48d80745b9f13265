"""Counting what a PTX kernel does, per thread, inside and outside its loops.

The method: split each `.entry` into lines; a branch to a label written earlier in the body
is a back edge, and the lines between that label and the branch are a loop's body (loops
nest when their ranges nest). Each instruction is classed by its opcode and type suffix
(fp32 FMA, other fp32, fp16 arithmetic, dp4a, conversion, other ALU, global loads/stores
with their byte width). The counts are static: one execution of each region. A launch's
work is then `outside + sum(loop body x trip count)`, with trip counts that the caller
derives from the launch shape (e.g. K / BLOCK_K), and per-thread counts times threads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

_ENTRY = re.compile(r"^\s*\.(?:visible\s+)?\.entry\s+(\w+)", re.MULTILINE)
_LABEL = re.compile(r"^\s*(\$?[\w$]+):\s*$")
_BRANCH = re.compile(r"^\s*(?:@!?%\w+\s+)?bra(?:\.uni)?\s+(\$?[\w$]+)\s*;")
_INSTRUCTION = re.compile(r"^\s*(?:@!?%\w+\s+)?([a-z][\w.]*)")
_WIDTHS = {"8": 1, "16": 2, "32": 4, "64": 8, "128": 16}
_FP16_ARITHMETIC = ("add", "sub", "mul", "fma", "neg", "abs", "min", "max")
_FP32_OTHER = ("add", "sub", "mul", "min", "max", "neg", "abs", "div", "rcp", "sqrt", "rsqrt")
_SFU = ("ex2", "lg2", "sin", "cos", "tanh")
_NOT_ALU = (
    "ld",
    "st",
    "bra",
    "ret",
    "exit",
    "bar",
    "membar",
    "fence",
    "atom",
    "red",
    "call",
    "cp",
    "prefetch",
)


@dataclass
class OpCounts:
    """Instructions of one region, per thread (fp16 counts instructions; half2 lanes separately)."""

    fp32_fma: int = 0
    fp32_other: int = 0
    fp16: int = 0
    fp16_lanes: int = 0
    dp4a: int = 0
    cvt: int = 0
    sfu: int = 0
    other_alu: int = 0
    global_loads: int = 0
    global_stores: int = 0
    global_load_bytes: int = 0
    global_store_bytes: int = 0
    shared_accesses: int = 0

    def add(self, other: OpCounts, times: float = 1) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name) * times)

    def fp32_rewrite(self) -> OpCounts:
        """The same work with each fp16 lane done by one fp32 instruction (an on-paper rewrite)."""
        result = self.scaled(1)
        result.fp32_other += result.fp16_lanes
        result.fp16 = result.fp16_lanes = 0
        return result

    def scaled(self, times: float) -> OpCounts:
        result = OpCounts()
        result.add(self, times)
        return result


@dataclass
class Loop:
    """One loop of a kernel: its label, nesting depth (1 = outermost) and body counts."""

    label: str
    depth: int
    body: OpCounts  # the body's own lines, inner loops excluded
    start: int = 0  # line span of the loop in its entry
    end: int = 0
    # The part of `body` after its last inner loop. nvcc puts an unrolled inner loop's
    # remainder iterations there, as guarded copies of which only some run.
    tail: OpCounts = field(default_factory=OpCounts)

    def encloses(self, other: Loop) -> bool:
        return self.start <= other.start and other.end <= self.end


@dataclass
class KernelCounts:
    name: str
    outside: OpCounts
    loops: list[Loop] = field(default_factory=list)

    def per_thread(self, trips: dict[int, float] | None = None) -> OpCounts:
        """Dynamic counts per thread: each loop body times the product of trips of its depths.

        `trips` maps a loop depth to its trip count; a depth not named runs once.
        """
        trips = trips or {}
        total = OpCounts()
        total.add(self.outside)
        for loop in self.loops:
            times = 1.0
            for depth in range(1, loop.depth + 1):
                times *= trips.get(depth, 1)
            total.add(loop.body, times)
        return total

    def hot_chain(self) -> list[Loop]:
        """The loop with the most arithmetic in its body, and the loops that enclose it (outer first)."""
        if not self.loops:
            return []

        def arithmetic(loop: Loop) -> int:
            body = loop.body
            return body.fp32_fma + body.fp32_other + body.fp16 + body.dp4a

        hot = max(self.loops, key=arithmetic)
        chain = [loop for loop in self.loops if loop.depth < hot.depth and loop.encloses(hot)]
        return [*chain, hot]

    def launch(
        self, threads: int, iterations: dict[int, float], tail_share: dict[int, float] | None = None
    ) -> OpCounts:
        """Counts of one launch of `threads` threads.

        `iterations` gives, per depth of the hot loop's chain, how many times that loop's
        body runs over the whole launch; every other loop's body runs once per thread.
        `tail_share` gives, per depth of that chain, the share of the body's tail (after its
        inner loop) that runs, where the launch shape says only some guarded copies run.
        """
        chain = self.hot_chain()
        total = self.outside.scaled(threads)
        for loop in self.loops:
            times = iterations.get(loop.depth, threads) if loop in chain else threads
            total.add(loop.body, times)
            share = (tail_share or {}).get(loop.depth) if loop in chain else None
            if share is not None:
                total.add(loop.tail, -(1 - share) * times)
        return total

    @property
    def hot(self) -> OpCounts:
        """The counts of the innermost loops (or the whole body of a loop-free kernel)."""
        if not self.loops:
            return self.outside
        deepest = max(loop.depth for loop in self.loops)
        total = OpCounts()
        for loop in self.loops:
            if loop.depth == deepest:
                total.add(loop.body)
        return total


def _bytes_of(opcode: str) -> int:
    parts = opcode.split(".")
    vector = next((int(p[1:]) for p in parts if re.fullmatch(r"v[248]", p)), 1)
    width = next((_WIDTHS[p[1:]] for p in reversed(parts) if p[1:] in _WIDTHS and p[0] in "bufs"), 4)
    return vector * width


def classify(opcode: str, counts: OpCounts) -> None:
    """Add one instruction, named by its full opcode (e.g. `fma.rn.f16x2`), to `counts`."""
    parts = opcode.split(".")
    base = parts[0]
    if base in ("ld", "ldu") and "global" in parts:
        counts.global_loads += 1
        counts.global_load_bytes += _bytes_of(opcode)
    elif base == "st" and "global" in parts:
        counts.global_stores += 1
        counts.global_store_bytes += _bytes_of(opcode)
    elif base in ("ld", "st") and "shared" in parts:
        counts.shared_accesses += 1
    elif base in _NOT_ALU:
        return
    elif base == "dp4a" or base == "dp2a":
        counts.dp4a += 1
    elif base == "cvt":
        counts.cvt += 1
    elif base in _FP16_ARITHMETIC and (
        "f16" in parts or "f16x2" in parts or "bf16" in parts or "bf16x2" in parts
    ):
        counts.fp16 += 1
        counts.fp16_lanes += 2 if parts[-1].endswith("x2") else 1
    elif base in ("fma", "mad") and "f32" in parts:
        counts.fp32_fma += 1
    elif base in _SFU:
        counts.sfu += 1
    elif base in _FP32_OTHER and "f32" in parts:
        counts.fp32_other += 1
    elif base not in ("mov", "shfl", "vote", "activemask") and not base.startswith("."):
        counts.other_alu += 1


def _entries(ptx: str) -> dict[str, list[str]]:
    """Each `.entry` name with the lines of its body."""
    starts = [(m.group(1), m.start()) for m in _ENTRY.finditer(ptx)]
    bodies = {}
    for number, (name, start) in enumerate(starts):
        end = starts[number + 1][1] if number + 1 < len(starts) else len(ptx)
        bodies[name] = ptx[start:end].splitlines()
    return bodies


def count_kernel(name: str, lines: list[str]) -> KernelCounts:
    """Static counts of one entry's lines, split into loops by back edges."""
    labels: dict[str, int] = {}
    back_edges: list[tuple[int, int, str]] = []
    for number, line in enumerate(lines):
        line = line.split("//", 1)[0]
        if label := _LABEL.match(line):
            labels[label.group(1)] = number
        elif (branch := _BRANCH.match(line)) and branch.group(1) in labels:
            back_edges.append((labels[branch.group(1)], number, branch.group(1)))
    # One loop per label (several back edges to one header form one loop: the widest).
    spans: dict[str, tuple[int, int]] = {}
    for start, end, label in back_edges:
        spans[label] = (start, max(end, spans.get(label, (start, end))[1]))
    ordered = sorted(spans.items(), key=lambda item: (item[1][0], -item[1][1]))

    def owner(number: int) -> str | None:
        inner = None
        for label, (start, end) in ordered:
            if start <= number <= end:
                inner = label  # later starts are nested deeper
        return inner

    def depth(label: str) -> int:
        start, end = spans[label]
        return sum(1 for s, e in spans.values() if s <= start and end <= e)

    outside = OpCounts()
    bodies = {label: OpCounts() for label in spans}
    for number, line in enumerate(lines):
        # nvcc writes inline asm (cuda_fp16's __hfma2 among it) as `{fma.rn.f16x2 ...;`.
        text = line.split("//", 1)[0].strip().lstrip("{").strip()
        if not text or _LABEL.match(text) or text.startswith((".", "}")):
            continue
        instruction = _INSTRUCTION.match(text)
        if instruction is None:
            continue
        region = owner(number)
        classify(instruction.group(1), bodies[region] if region else outside)
    tails = {label: OpCounts() for label in spans}
    for label, (start, end) in spans.items():
        inner_ends = [e for other, (s, e) in spans.items() if other != label and start <= s and e <= end]
        if not inner_ends:
            continue
        for number in range(max(inner_ends) + 1, end + 1):
            text = lines[number].split("//", 1)[0].strip().lstrip("{").strip()
            instruction = _INSTRUCTION.match(text) if text and not text.startswith((".", "}")) else None
            if instruction and not _LABEL.match(text) and owner(number) == label:
                classify(instruction.group(1), tails[label])
    loops = [Loop(label, depth(label), bodies[label], *span, tails[label]) for label, span in ordered]
    return KernelCounts(name, outside, loops)


def count_ptx(ptx: str) -> dict[str, KernelCounts]:
    """Counts of every kernel (`.entry`) in a PTX module, by name."""
    return {name: count_kernel(name, lines) for name, lines in _entries(ptx).items()}
