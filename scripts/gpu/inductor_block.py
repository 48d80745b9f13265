"""A small transformer block for torch.compile in Pascal form: RMSNorm, rotary embedding,
attention through SDPA's math path, a SiLU-and-mul MLP and an index_add (Inductor's scatter
with atomics). Compared with the same block run eagerly, in the same dtype, on the same GPU.

Inductor builds its Triton target from torch.cuda.get_device_capability, not from triton's
driver, so that query answers 6.1 while the block compiles; the GPU-too-old gates read the
device properties and still see the real card (the repository's torch patches lift them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

SHAPE = "tokens 256, hidden 256, heads 4x64, mlp 512, index_add into 64 rows"
# Compiled and eager differ by fused, reordered sums and by where intermediates are rounded
# (Inductor keeps fused fp16 intermediates in fp32); outputs are of magnitude ~4 to ~16.
BOUND = {torch.float32: 1e-3, torch.float16: 5e-2}


class Block(nn.Module):
    def __init__(self, hidden: int = 256, heads: int = 4, mlp: int = 512) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.Parameter(torch.rand(hidden) + 0.5)
        self.qkv = nn.Linear(hidden, 3 * hidden, bias=False)
        self.proj = nn.Linear(hidden, hidden, bias=False)
        self.up = nn.Linear(hidden, 2 * mlp, bias=False)
        self.down = nn.Linear(mlp, hidden, bias=False)

    def rms_norm(self, x: torch.Tensor) -> torch.Tensor:
        variance = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(variance + 1e-6)).to(x.dtype) * self.norm.to(x.dtype)

    @staticmethod
    def rotary(x: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        frequencies = 1.0 / (10000 ** (torch.arange(half, device=x.device, dtype=torch.float32) / half))
        angles = positions[:, None].float() * frequencies[None, :]
        cos, sin = angles.cos()[:, None, :].to(x.dtype), angles.sin()[:, None, :].to(x.dtype)
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        tokens, hidden = x.shape
        q, k, v = self.qkv(self.rms_norm(x)).view(tokens, 3, self.heads, hidden // self.heads).unbind(1)
        q, k = self.rotary(q, positions), self.rotary(k, positions)
        attention = nn.functional.scaled_dot_product_attention(
            q.transpose(0, 1)[None], k.transpose(0, 1)[None], v.transpose(0, 1)[None], is_causal=True
        )[0].transpose(0, 1)
        x = x + self.proj(attention.reshape(tokens, hidden))
        gate, up = self.up(self.rms_norm(x)).chunk(2, dim=-1)
        x = x + self.down(nn.functional.silu(gate) * up)
        pooled = torch.zeros(64, hidden, device=x.device, dtype=x.dtype).index_add(0, index, x)
        return torch.cat([x, pooled])


@contextmanager
def pascal_capability_for_inductor(major: int = 6, minor: int = 1) -> Iterator[None]:
    saved = torch.cuda.get_device_capability
    torch.cuda.get_device_capability = lambda device=None: (major, minor)
    try:
        yield
    finally:
        torch.cuda.get_device_capability = saved


def compiled_vs_eager(dtype: torch.dtype, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    import torch._dynamo
    import torch._inductor.config as inductor_config
    from torch.nn.attention import SDPBackend, sdpa_kernel

    # Compile in this process (worker processes would not see the Pascal form) and load
    # kernels through triton's own launcher, which takes the PTX image.
    inductor_config.compile_threads = 1
    if hasattr(inductor_config, "use_static_cuda_launcher"):
        inductor_config.use_static_cuda_launcher = False
    torch._dynamo.reset()
    generator = torch.Generator().manual_seed(0)
    block = Block()
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator) * parameter.shape[-1] ** -0.5
                + (parameter.dim() == 1)
            )
    x = torch.randn(256, 256, generator=generator).to(device, dtype)
    positions = torch.arange(256, device=device)
    index = torch.randint(0, 64, (256,), generator=generator).to(device)
    block = block.to(device=device, dtype=dtype)
    compiled = torch.compile(block, backend="inductor", fullgraph=True)
    with torch.no_grad(), sdpa_kernel([SDPBackend.MATH]):
        reference = block(x, positions, index)
        with pascal_capability_for_inductor():
            result = compiled(x, positions, index)
    return result, reference
