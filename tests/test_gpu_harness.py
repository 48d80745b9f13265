"""The CPU side of the Pascal-form numerics harness (scripts/gpu/), without a GPU.

- the case lists cover what issue 19 asks for (head sizes, modes, block sizes, GQA, features,
  dtypes, lengths around the prefix-prefill tiles);
- the float32 references agree with independent computations (torch's SDPA, a per-query loop,
  softmax over the union of keys), and each check fails on a deliberately wrong input;
- the paged cache, MoE alignment and wna16 packing round-trip;
- the PTX-as-binary hook refuses PTX that is not sm_6x, the triton overlay refuses a file that
  is not the released one, and the import stubs make an import work that fails without them.
"""

from __future__ import annotations

import ast
import math
import sys
from pathlib import Path

import pytest
import support.expected as expect

# The references are torch code: the vllm-checks extra brings a CPU torch (CI installs it
# before its second pytest run, which takes the tests marked vllm_checks).
torch = pytest.importorskip(
    "torch", reason="the harness's references need torch: pip install -e '.[vllm-checks]'"
)
pytestmark = pytest.mark.vllm_checks

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts" / "gpu"))

import pascal_form  # noqa: E402
import vllm_cases as vc  # noqa: E402
import vllm_import  # noqa: E402

# --------------------------------------------------------------------------- cases


def test_attention_cases_cover_the_issue() -> None:
    cases = vc.attention_cases()
    names = [c.name for c in cases]
    assert len(names) == len(set(names))
    for head in (64, 80, 96, 128, 256):
        modes = {c.name.split()[1] for c in cases if c.head_size == head and c.dtype == torch.float16}
        assert modes >= {"prefill", "decode-2d", "decode-3d", "mixed"}, head
    assert {c.block_size for c in cases} == {16, 32}
    assert {c.gqa for c in cases} == {1, 4, 8}
    assert {c.dtype for c in cases} == {torch.float16, torch.float32}
    assert any(c.window for c in cases) and any(c.alibi for c in cases)
    assert any(c.softcap for c in cases) and any(c.sinks for c in cases)
    # The 3D kernel only runs for decode-only batches; prefill and mixed batches take the 2D one.
    assert all(set(c.query_lens) == {1} for c in cases if c.use_3d)


def test_gemma3_cases_reach_past_their_window() -> None:
    """Gemma3's tile rule (window 1024 at head 128/256) meets patch 0015's fp32 rule; a window the
    contexts never reach would mask nothing."""
    cases = vc.gemma3_cases()
    assert {(c.head_size, c.dtype) for c in cases} >= {(256, torch.float32), (128, torch.float32)}
    for case in cases:
        assert case.window == 1024 and max(case.seq_lens) > case.window, case.name
    assert {c.name for c in cases} <= {c.name for c in vc.attention_cases()}


def test_prefix_cases_sit_around_the_tiles() -> None:
    cases = vc.prefix_cases({128: 64, 256: 16}, 32, {128: 32, 256: 16})
    h128 = [c for c in cases if c.head_size == 128 and not c.alibi and c.dtype == torch.float16]
    assert sorted(c.query_lens[0] for c in h128) == [63, 64, 65]
    assert sorted(c.context_lens[0] for c in h128) == [31, 32, 33]
    alibi = [c for c in cases if c.head_size == 128 and c.alibi and c.dtype == torch.float16]
    assert sorted(c.query_lens[0] for c in alibi) == [31, 32, 33]
    assert {c.head_size for c in cases} == {128, 256}


def test_small_cases_name_every_kernel() -> None:
    kinds = {c.kind for c in vc.small_cases()}
    assert kinds == {"reshape_and_cache", "merge_attn_states", "fused_moe", "moe_wna16"}


# --------------------------------------------------------------------------- references


def _qkv(query_len: int, seq_len: int, heads: int = 8, kv_heads: int = 2, head: int = 32) -> tuple:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(query_len, heads, head, generator=generator)
    k = torch.randn(seq_len, kv_heads, head, generator=generator)
    v = torch.randn(seq_len, kv_heads, head, generator=generator)
    return q, k, v


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, context: int) -> torch.Tensor:
    gqa = q.shape[1] // k.shape[1]
    mask = torch.arange(k.shape[0])[None, :] <= (context + torch.arange(q.shape[0]))[:, None]
    out = torch.nn.functional.scaled_dot_product_attention(
        q.transpose(0, 1),
        k.repeat_interleave(gqa, 1).transpose(0, 1),
        v.repeat_interleave(gqa, 1).transpose(0, 1),
        attn_mask=mask,
    )
    return out.transpose(0, 1)


@pytest.mark.parametrize("context", [0, 37])
def test_attention_reference_is_causal_attention(context: int) -> None:
    q, k, v = _qkv(20, 20 + context)
    reference = vc.attention_reference(q, k, v, context, q.shape[-1] ** -0.5)
    torch.testing.assert_close(reference, _sdpa(q, k, v, context), atol=1e-5, rtol=1e-5)


def test_attention_reference_check_catches_a_shifted_mask() -> None:
    """Twin: a query placed one position off sees one key too many, and the check says so."""
    q, k, v = _qkv(20, 57)
    shifted = vc.attention_reference(q, k, v, 38, q.shape[-1] ** -0.5)
    assert not torch.allclose(shifted, _sdpa(q, k, v, 37), atol=1e-3)


def _loop_reference(q, k, v, context, scale, window=0, slopes=None, softcap=0.0, sinks=None):
    """The same definitions, one query and head at a time, in float64."""
    gqa = q.shape[1] // k.shape[1]
    out = torch.zeros(q.shape, dtype=torch.float64)
    for i in range(q.shape[0]):
        position = context + i
        for h in range(q.shape[1]):
            logits, rows = [], []
            for j in range(position + 1):
                if window and position - j >= window:
                    continue
                s = float(q[i, h].double() @ k[j, h // gqa].double()) * scale
                if softcap:
                    s = softcap * math.tanh(s / softcap)
                if slopes is not None:
                    s += float(slopes[h]) * (j - position)
                logits.append(s)
                rows.append(v[j, h // gqa].double())
            extra = [float(sinks[h])] if sinks is not None else []
            top = max(logits + extra)
            weights = [math.exp(s - top) for s in logits]
            total = sum(weights) + sum(math.exp(s - top) for s in extra)
            out[i, h] = sum(w * r for w, r in zip(weights, rows, strict=True)) / total
    return out


@pytest.mark.parametrize(
    "features",
    [{"window": 5}, {"slopes": vc.alibi_slopes(8)}, {"softcap": 2.0}, {"sinks": torch.linspace(-1, 3, 8)}],
    ids=["window", "alibi", "softcap", "sinks"],
)
def test_attention_reference_features_match_a_loop(features: dict) -> None:
    q, k, v = _qkv(6, 15, head=16)
    scale = 0.7
    reference = vc.attention_reference(q, k, v, 9, scale, **features)
    expected = _loop_reference(q, k, v, 9, scale, **features)
    torch.testing.assert_close(reference.double(), expected, atol=1e-5, rtol=1e-5)
    # Twin: the same check without the feature fails, so the feature changes the result.
    assert not torch.allclose(vc.attention_reference(q, k, v, 9, scale).double(), expected, atol=1e-3)


def test_alibi_slopes_follow_the_paper() -> None:
    torch.testing.assert_close(vc.alibi_slopes(8), torch.tensor([2.0 ** -(i + 1) for i in range(8)]))
    assert len(vc.alibi_slopes(12)) == 12


def test_merge_reference_is_attention_over_both_key_sets() -> None:
    q, k, v = _qkv(1, 40, heads=4, kv_heads=4)
    scale = q.shape[-1] ** -0.5
    scores = torch.einsum("qhd,khd->hqk", q, k) * scale  # [heads, 1, keys]

    def part(sl: slice) -> tuple[torch.Tensor, torch.Tensor]:
        p = torch.softmax(scores[..., sl], -1)
        return torch.einsum("hqk,khd->qhd", p, v[sl]), torch.logsumexp(scores[..., sl], -1)

    prefix, prefix_lse = part(slice(0, 25))
    suffix, suffix_lse = part(slice(25, 40))
    merged, lse = vc.merge_reference(prefix, prefix_lse, suffix, suffix_lse)
    full = torch.einsum("hqk,khd->qhd", torch.softmax(scores, -1), v)
    torch.testing.assert_close(merged, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(lse, torch.logsumexp(scores, -1), atol=1e-5, rtol=1e-5)
    # Twin: merging with the two lse swapped is wrong, and the comparison sees it.
    wrong, _ = vc.merge_reference(prefix, suffix_lse, suffix, prefix_lse)
    assert not torch.allclose(wrong, full, atol=1e-3)


def _gdn_sequence(tokens: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    q = vc.l2_normalized(torch.randn(tokens, 2, 16, generator=gen))
    k = vc.l2_normalized(torch.randn(tokens, 2, 16, generator=gen))
    v = torch.randn(tokens, 4, 16, generator=gen)
    g = torch.nn.functional.logsigmoid(torch.randn(tokens, 4, generator=gen))
    beta = torch.sigmoid(torch.randn(tokens, 4, generator=gen))
    state = torch.randn(4, 16, 16, generator=gen) / 10
    return q, k, v, g, beta, state


def test_gated_delta_rule_reference_writes_the_value_along_its_key() -> None:
    """beta 1, no decay, an empty state: S = v k^T, so reading with q = k returns v."""
    k = torch.zeros(1, 1, 8)
    k[0, 0, 3] = 1.0
    v = torch.arange(8.0).reshape(1, 1, 8)
    out, state = vc.gated_delta_rule_reference(
        k, k, v, torch.zeros(1, 1), torch.ones(1, 1), 1.0, torch.zeros(1, 8, 8)
    )
    assert torch.equal(out[0, 0], v[0, 0]) and torch.equal(state[0, :, 3], v[0, 0])


def test_gated_delta_rule_reference_carries_its_state_across_a_split() -> None:
    """What a chunk boundary or a decode step must preserve: two halves equal the whole."""
    q, k, v, g, beta, state = _gdn_sequence(10)
    whole, end = vc.gated_delta_rule_reference(q, k, v, g, beta, 0.25, state)
    first, middle = vc.gated_delta_rule_reference(q[:4], k[:4], v[:4], g[:4], beta[:4], 0.25, state)
    second, end2 = vc.gated_delta_rule_reference(q[4:], k[4:], v[4:], g[4:], beta[4:], 0.25, middle)
    torch.testing.assert_close(torch.cat([first, second]), whole)
    torch.testing.assert_close(end2, end)


def test_the_gateless_twin_reference_differs_by_more_than_the_bound() -> None:
    q, k, v, g, beta, state = _gdn_sequence(64)
    right, _ = vc.gated_delta_rule_reference(q, k, v, g, beta, 0.25, state)
    wrong, _ = vc.gated_delta_rule_reference(q, k, v, g, beta, 0.25, state, gate=False)
    assert (right - wrong).abs().max() > 10 * vc.GDN_BOUND["chunk"]


def test_value_heads_read_their_key_head_in_groups() -> None:
    """Value heads 0 and 1 read key head 0, 2 and 3 key head 1 (i_hv // (HV // H) in FLA)."""
    q, k, v, g, beta, state = _gdn_sequence(3)
    out, _ = vc.gated_delta_rule_reference(q, k, v, g, beta, 0.25, state)
    alone, _ = vc.gated_delta_rule_reference(
        q[:, 1:], k[:, 1:], v[:, 2:], g[:, 2:], beta[:, 2:], 0.25, state[2:]
    )
    torch.testing.assert_close(out[:, 2:], alone)


def test_gdn_gates_and_mixed_qkv_split() -> None:
    g, beta = vc.gdn_gating_reference(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.zeros(3))
    assert torch.allclose(g, torch.full((2, 3), -math.log(2.0))) and torch.allclose(
        beta, torch.full((2, 3), 0.5)
    )
    mixed = torch.arange(2 * (2 * 2 * 4 + 3 * 4), dtype=torch.float32).reshape(2, -1)
    q, k, v = vc.split_mixed_qkv(mixed, 2, 3, 4)
    assert q.shape == k.shape == (2, 2, 4) and v.shape == (2, 3, 4)
    assert q[0, 1, 0] == 4 and k[0, 0, 0] == 8 and v[0, 0, 0] == 16


def test_gated_rmsnorm_reference_normalizes_then_gates() -> None:
    x = torch.tensor([[3.0, 4.0]])
    out = vc.gated_rmsnorm_reference(x, torch.ones(2), torch.full((1, 2), 50.0), eps=0.0)
    # rms(3, 4) = sqrt(12.5); silu(50) = 50 to float32 precision.
    torch.testing.assert_close(out, x / math.sqrt(12.5) * 50)


def test_gdn_cases_sit_around_the_chunk() -> None:
    cases = {c.kind: c for c in vc.gdn_cases()}
    assert set(cases) == set(vc.GDN_BOUND)
    varlen = next(c for c in vc.gdn_cases() if "varlen" in c.name)
    assert {vc.GDN_CHUNK - 1, vc.GDN_CHUNK, vc.GDN_CHUNK + 1} <= set(varlen.seq_lens)
    assert any(c.k_heads == 16 and c.v_heads == 32 and c.head_dim == 128 for c in vc.gdn_cases())


# --------------------------------------------------------------------------- inputs


def test_paged_cache_holds_every_token_where_the_table_says() -> None:
    generator = torch.Generator().manual_seed(1)
    kv = vc.paged_kv((5, 33, 16), 2, 8, 16, generator)
    k_cache, _ = vc.flash_layout(kv, 16, torch.float32)
    for i, keys in enumerate(kv.keys):
        for pos in range(keys.shape[0]):
            block = int(kv.block_table[i, pos // 16])
            torch.testing.assert_close(k_cache[block, pos % 16], keys[pos])
    # Slots no token uses are NaN, so a kernel that reads one shows an infinite error.
    used = sum(k.shape[0] for k in kv.keys)
    assert int(torch.isnan(k_cache[..., 0, 0]).sum()) == kv.num_blocks * 16 - used
    assert vc.Error.of(k_cache, torch.zeros_like(k_cache)).max_abs == float("inf")


def test_moe_align_groups_slots_by_expert() -> None:
    ids = torch.tensor([[0, 3], [3, 1], [0, 3]])
    sorted_ids, expert_ids, padded = vc.moe_align(ids, 4, 4)
    assert int(padded) == len(sorted_ids) == 4 * len(expert_ids)
    flat = ids.flatten()
    real = sorted_ids[sorted_ids < flat.numel()]
    assert sorted(real.tolist()) == list(range(flat.numel()))
    for block, expert in enumerate(expert_ids.tolist()):
        slots = sorted_ids[block * 4 : (block + 1) * 4]
        assert all(flat[s] == expert for s in slots.tolist() if s < flat.numel())


@pytest.mark.parametrize("bits", [4, 8])
def test_wna16_packing_round_trips(bits: int) -> None:
    weights = torch.randn(2, 16, 256, generator=torch.Generator().manual_seed(2))
    packed, scales = vc.quantize_wna16(weights, bits, 64)
    assert packed.dtype == torch.uint8 and packed.shape[-1] == (256 if bits == 8 else 128)
    restored = vc.dequantize_wna16(packed, scales, bits, 64)
    step = scales.repeat_interleave(64, -1)
    assert float(((restored - weights).abs() / step).max()) <= 0.5 + 1e-4
    # Twin: reading int4 as if the high nibble came first gives other weights.
    if bits == 4:
        swapped = ((packed >> 4) | (packed << 4)).to(torch.uint8)
        assert not torch.allclose(vc.dequantize_wna16(swapped, scales, bits, 64), restored)


def test_moe_reference_applies_routing() -> None:
    x = torch.randn(3, 8)
    w = torch.randn(4, 5, 8)
    ids = torch.tensor([[0, 2], [1, 3], [2, 0]])
    routing = torch.rand(3, 2)
    out = vc.moe_reference(x, w, ids, routing)
    torch.testing.assert_close(out[1, 1], (w[3] @ x[1]) * routing[1, 1])


# --------------------------------------------------------------------------- Pascal form

PTX = ".version 8.7\n.target sm_{}\n.address_size 64\n.visible .entry k() {{ ret; }}\n"


def test_ptx_hook_passes_sm6x_ptx_nul_terminated() -> None:
    image = pascal_form.ptx_as_binary(PTX.format(61))
    assert image.endswith(b"\0") and image[:-1].decode() == PTX.format(61)
    assert pascal_form.ptx_as_binary(PTX.format(60)).endswith(b"\0")


@pytest.mark.parametrize("target", ["90a", "70", "75"])
def test_ptx_hook_refuses_ptx_for_other_gpus(target: str) -> None:
    """Twin: PTX for any other target is refused, so a run never measures non-Pascal code."""
    with pytest.raises(pascal_form.PascalFormError, match=f"sm_{target}, not sm_6x"):
        pascal_form.ptx_as_binary(PTX.format(target))
    with pytest.raises(pascal_form.PascalFormError, match="no target"):
        pascal_form.ptx_as_binary(".version 8.7\n")


def _package(root: Path, text: str) -> Path:
    (root / "backends").mkdir(parents=True)
    (root / "backends" / "compiler.py").write_text(text)
    (root / "other.py").write_text("kept = True\n")
    return root


def test_overlay_replaces_released_files(tmp_path: Path) -> None:
    stock = _package(tmp_path / "stock", "released = 1\n")
    patched = _package(tmp_path / "patched", "released = 1\npascal = 1\n")
    pascal_form.write_overlay(stock, patched, ["backends/compiler.py"], tmp_path / "overlay")
    names = pascal_form.overlay_patched_triton(stock, tmp_path / "overlay", tmp_path / "out")
    assert names == ["backends/compiler.py"]
    assert (tmp_path / "out" / "triton" / "backends" / "compiler.py").read_text().endswith("pascal = 1\n")
    assert (tmp_path / "out" / "triton" / "other.py").read_text() == "kept = True\n"


def test_overlay_refuses_another_build(tmp_path: Path) -> None:
    """Twin: an installed file that is not the released one is not overwritten."""
    stock = _package(tmp_path / "stock", "released = 1\n")
    patched = _package(tmp_path / "patched", "released = 1\npascal = 1\n")
    pascal_form.write_overlay(stock, patched, ["backends/compiler.py"], tmp_path / "overlay")
    other = _package(tmp_path / "other", "released = 2\n")
    with pytest.raises(pascal_form.PascalFormError, match="not the released triton's"):
        pascal_form.overlay_patched_triton(other, tmp_path / "overlay", tmp_path / "out")


# --------------------------------------------------------------------------- imports


@pytest.fixture
def fake_tree(tmp_path: Path):
    yield _tree(tmp_path)
    vllm_import.remove_stubs()
    for name in [m for m in sys.modules if m.startswith("fakevllm_gpu_harness")]:
        del sys.modules[name]
    sys.path.remove(str(tmp_path))


def _tree(root: Path) -> Path:
    package = root / "fakevllm_gpu_harness"
    (package / "heavy").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "heavy" / "__init__.py").write_text("import a_module_nobody_has  # noqa\n")
    (package / "kernel.py").write_text(
        "from fakevllm_gpu_harness.heavy import CustomOp, register\n"
        "@register('x')\n"
        "class Op(CustomOp):\n    pass\n"
        "def launch(n):\n    return n * 2\n"
    )
    return root


def test_stubbed_imports_make_the_kernel_module_import(fake_tree: Path) -> None:
    modules = vllm_import.import_kernels(
        fake_tree, ["fakevllm_gpu_harness.kernel"], ["fakevllm_gpu_harness.heavy"]
    )
    assert modules["fakevllm_gpu_harness.kernel"].launch(21) == 42
    assert "fakevllm_gpu_harness.heavy" in vllm_import.stubbed_modules()


def test_without_stubs_the_kernel_module_does_not_import(fake_tree: Path) -> None:
    """Twin: the heavy module really fails to import, so the stub is what made it work."""
    with pytest.raises(ModuleNotFoundError, match="a_module_nobody_has"):
        vllm_import.import_kernels(fake_tree, ["fakevllm_gpu_harness.kernel"])


def _plugin_tree(root: Path) -> Path:
    """A module that, like vLLM 0.33.0's kv_cache_interface, asks a config module for a handler."""
    package = root / "fakevllm_gpu_harness"
    package.mkdir(exist_ok=True)
    (package / "quant.py").write_text(
        "def is_quantized(dtype):\n"
        "    from fakevllm_gpu_harness.cfg import get_handler\n"
        "    return get_handler(dtype) is not None\n"
    )
    return root


def test_stub_answers_as_the_real_module_without_plugins(fake_tree: Path, monkeypatch) -> None:
    answers = {"get_handler": lambda name: None}
    monkeypatch.setitem(vllm_import.STUB_ATTRIBUTES, "fakevllm_gpu_harness.cfg", answers)
    quant = vllm_import.import_kernels(
        _plugin_tree(fake_tree), ["fakevllm_gpu_harness.quant"], ["fakevllm_gpu_harness.cfg"]
    )["fakevllm_gpu_harness.quant"]
    assert quant.is_quantized("auto") is False
    # vLLM 0.33.0's real registry of KV cache dtype handlers is empty without plugins.
    assert vllm_import.STUB_ATTRIBUTES["vllm.config.cache"]["get_kv_cache_dtype_handler"]("auto") is None
    assert "vllm.config" in vllm_import.FUSED_MOE_STUBS_0_33


def test_bare_stub_makes_auto_look_quantized(fake_tree: Path) -> None:
    """Twin: a stand-in answer is not None, which made reshape_and_cache view an fp16 cache as fp8."""
    quant = vllm_import.import_kernels(
        _plugin_tree(fake_tree), ["fakevllm_gpu_harness.quant"], ["fakevllm_gpu_harness.cfg"]
    )["fakevllm_gpu_harness.quant"]
    assert quant.is_quantized("auto") is True


# --------------------------------------------------------------------------- carried files


# The harness files that run where the carry was made, not on the GPU machine: they may import
# any of pascal_forge (and read conda_build_config.yaml).
RUN_HERE = {
    "prepare_gpu_carry.py",
    "prepare_engine_carry.py",
    "make_pascal_ptx.py",
    "make_gptq_ptx.py",
    "make_moe_wna16_ptx.py",
    "build_vllm_extension.py",
}


def _module_level_forge_imports(source: str) -> set[str]:
    """The pascal_forge modules a file imports when it is loaded (not inside a function)."""
    found = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pascal_forge"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("pascal_forge")}
    return found


def _uncarried(source: str) -> set[str]:
    import prepare_gpu_carry

    carried = {"pascal_forge"} | {
        f"pascal_forge.{name.removesuffix('.py')}" for name in prepare_gpu_carry.HARNESS_MODULES
    }
    return _module_level_forge_imports(source) - carried


def test_the_device_side_imports_only_the_carried_forge_modules() -> None:
    """copy_scripts carries pascal_forge's __init__, errors and pascal modules only: every file
    that runs on the GPU machine must load with those, and they with the standard library."""
    import prepare_gpu_carry

    device_side = [p for p in (REPO / "scripts" / "gpu").rglob("*.py") if p.name not in RUN_HERE]
    assert {p.name for p in device_side} >= {"pascal_form.py", "vllm_import.py", "run_vllm_numerics.py"}
    for path in device_side:
        assert _uncarried(path.read_text()) == set(), path
    forge = REPO / "scripts" / "pascal_forge"
    for name in prepare_gpu_carry.HARNESS_MODULES:
        source = (forge / name).read_text()
        imported = set()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                imported |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                imported.add((node.module or "").split(".")[0])
        assert imported <= set(sys.stdlib_module_names) | {"__future__"}, name
    # The twin: a device-side file that reached for the variant config would not load there.
    twin = "from pascal_forge.recipes.variants import stacks\n"
    assert _uncarried(twin) == {"pascal_forge.recipes.variants"}


def test_triton_series_is_the_recipes_patch_list() -> None:
    import prepare_gpu_carry

    series = prepare_gpu_carry.triton_series()
    assert series and all(p.is_file() and p.suffix == ".patch" for p in series)
    target = prepare_gpu_carry.patch_check_target(
        prepare_gpu_carry.Recipe("triton", REPO / "recipes" / "triton"), prepare_gpu_carry.SEED_TRITON
    )
    files = prepare_gpu_carry._changed_package_files(series, dict(target.path_map))
    assert "backends/nvidia/compiler.py" in files and "language/semantic.py" in files


def test_each_carried_vllm_tree_has_its_series() -> None:
    import prepare_gpu_carry

    # The releases follow conda_build_config.yaml's stacks, not constants of the harness.
    assert (expect.SEED.vllm, expect.CURRENT.vllm) == prepare_gpu_carry.VLLM_VERSIONS
    for version in prepare_gpu_carry.VLLM_VERSIONS:
        series = prepare_gpu_carry.vllm_series(version=version)
        assert series and all(p.parent.name == version for p in series), version
        # The fp32 tiles the seed run measured as too big for 48 KB are part of both series.
        assert "0015-fp32-attention-tiles-for-pascal.patch" in {p.name for p in series}, version


@pytest.mark.slow
def test_wrong_tiles_edit_the_patched_tree(upstream_cache: Path, tmp_path: Path) -> None:
    import prepare_gpu_carry

    from pascal_forge.checks.vllm.compile import patched_upstream

    vllm = prepare_gpu_carry.Recipe("vllm", REPO / "recipes" / "vllm")
    tree = patched_upstream(
        vllm, prepare_gpu_carry.VARIANT_CONFIG, tmp_path, upstream_cache, prepare_gpu_carry.SEED_VLLM
    )
    text = (tree / prepare_gpu_carry.PREFIX_PREFILL).read_text()
    variants = prepare_gpu_carry.wrong_tile_variants(text)
    assert set(variants) == {"grid-drops-query-tail", "alibi-keys-skip-tail"}
    assert all(v != text for v in variants.values())
    # Twin: the stock file lacks the Pascal branch the grid edit targets.
    with pytest.raises(SystemExit, match="grid-drops-query-tail"):
        prepare_gpu_carry.wrong_tile_variants(text.replace("triton.cdiv(max_input_len", "cdiv(max_input_len"))


_KV_QUANT_PROBE = """
import sys
from pathlib import Path
import vllm_import
tree = Path(sys.argv[1])
vllm_import.ensure_dist_info(tree)
vllm_import.pascal_platform(tree)
stubs = vllm_import.FUSED_MOE_STUBS_0_33
if sys.argv[2] == "bare":
    vllm_import.STUB_ATTRIBUTES.clear()
m = vllm_import.import_kernels(tree, ["vllm.v1.kv_cache_interface"], stubs)["vllm.v1.kv_cache_interface"]
print(m.is_quantized_kv_cache("auto"), m.is_quantized_kv_cache("fp8"))
"""


@pytest.mark.slow
@pytest.mark.parametrize(("stub", "expected"), [("answered", "False True"), ("bare", "True True")])
def test_current_release_sees_auto_kv_cache_as_unquantized(
    upstream_cache: Path, tmp_path: Path, stub: str, expected: str
) -> None:
    """The current vLLM's own is_quantized_kv_cache under the harness's stubs; twin: the bare stub."""
    import subprocess

    import prepare_gpu_carry

    from pascal_forge.checks.vllm.compile import patched_upstream

    vllm = prepare_gpu_carry.Recipe("vllm", REPO / "recipes" / "vllm")
    tree = patched_upstream(
        vllm, prepare_gpu_carry.VARIANT_CONFIG, tmp_path, upstream_cache, prepare_gpu_carry.CURRENT_VLLM
    )
    path = f"{REPO / 'scripts' / 'gpu'}:{REPO / 'scripts'}"
    result = subprocess.run(
        [sys.executable, "-c", _KV_QUANT_PROBE, str(tree), stub],
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": path, "CUDA_VISIBLE_DEVICES": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.stdout.strip().splitlines()[-1:] == [expected], result.stderr[-3000:]
