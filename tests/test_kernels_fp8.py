"""Fine-grained fp8: the Triton kernels (run in the interpreter) against the plain-torch references, and
both against float64 maths done here from first principles (the e4m3 grid, exact matmuls)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from phasebook.kernels.dispatch import KernelError
from phasebook.kernels.fp8 import (
    Fp8Tiles,
    fp8_gemm,
    quantization_error,
    quantize_blocks,
    quantize_reference,
    quantize_tiles,
)
from phasebook.kernels.fp8_linear import Fp8Linear, fp8_linear

BACKENDS = ("triton", "reference")
FAST = settings(max_examples=12, deadline=None)


def random_matrix(rows: int, cols: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Gaussian values whose rows differ in magnitude by up to 2^±6, so tile scales really vary."""
    gen = torch.Generator().manual_seed(seed)
    magnitude = torch.exp2(torch.randint(-6, 7, (rows, 1), generator=gen).float())
    return (torch.randn(rows, cols, generator=gen) * magnitude).to(dtype)


def same_values(a: Fp8Tiles, b: Fp8Tiles) -> bool:
    """Equal fp8 values (-0 and +0 count as equal), equal scales, equal tiling."""
    return (a.block_rows == b.block_rows and torch.equal(a.data.float(), b.data.float())
            and torch.equal(a.scale, b.scale))


def expand(scale: torch.Tensor, tile: tuple[int, int], shape: torch.Size) -> torch.Tensor:
    """One scale per element, in float64."""
    full = scale.double().repeat_interleave(tile[0], 0).repeat_interleave(tile[1], 1)
    return full[: shape[0], : shape[1]]


def assert_nearest_e4m3(x: torch.Tensor, tiles: Fp8Tiles, tile: tuple[int, int]) -> None:
    """Check the quantisation from first principles, in float64.

    Each scale is its tile's max |x| / 448, every tile's largest element lands on ±448, and each stored
    value is the e4m3 number nearest to x / scale: within half the e4m3 spacing there, which is
    2^(floor(log2 |v|) - 3) for normal numbers (3 mantissa bits) and 2^-9 below 2^-6 (subnormals).
    """
    exact = x.double()
    rows, cols = x.shape
    grid = (math.ceil(rows / tile[0]), math.ceil(cols / tile[1]))
    padded = torch.zeros(grid[0] * tile[0], grid[1] * tile[1], dtype=torch.float64)
    padded[:rows, :cols] = exact.abs()
    amax = padded.view(grid[0], tile[0], grid[1], tile[1]).amax(dim=(1, 3))
    torch.testing.assert_close(tiles.scale.double(), amax.clamp_min(1e-12) / 448, rtol=1e-6, atol=0)

    scaled = exact / expand(tiles.scale, tile, x.shape)
    stored = tiles.data.double()
    spacing = torch.where(scaled.abs() >= 2.0**-6, torch.exp2(torch.floor(torch.log2(scaled.abs())) - 3),
                          torch.full_like(scaled, 2.0**-9))
    # The kernels divide in float32, which may move x / scale by a relative 2^-24 before rounding.
    assert torch.all((stored - scaled).abs() <= spacing / 2 + scaled.abs() * 1e-6)
    stored_amax = torch.zeros_like(padded)
    stored_amax[:rows, :cols] = stored.abs()
    tile_max = stored_amax.view(grid[0], tile[0], grid[1], tile[1]).amax(dim=(1, 3))
    assert torch.equal(tile_max[amax > 0], torch.full_like(tile_max[amax > 0], 448.0))


# Quantisation


@FAST
@given(rows=st.integers(1, 300), cols=st.integers(1, 300), bf16=st.booleans(), strided=st.booleans(),
       seed=st.integers(0, 2**16))
def test_tile_quantisation_kernel_matches_reference_and_transposes_in_the_same_pass(rows, cols, bf16, strided,
                                                                                      seed):
    dtype = torch.bfloat16 if bf16 else torch.float32
    x = random_matrix(cols, rows, seed, dtype).T if strided else random_matrix(rows, cols, seed, dtype)
    tiles, tiles_t = quantize_tiles(x, transpose=True, backend="triton")
    assert tiles.data.shape == (rows, cols) and tiles.scale.shape == (rows, math.ceil(cols / 128))
    assert tiles_t.data.shape == (cols, rows) and tiles_t.scale.shape == (cols, math.ceil(rows / 128))
    assert tiles.data.is_contiguous() and tiles_t.data.is_contiguous()
    assert same_values(tiles, quantize_tiles(x, backend="reference"))
    assert same_values(tiles_t, quantize_tiles(x.T, backend="reference"))
    assert same_values(quantize_tiles(x, backend="triton"), tiles)
    assert_nearest_e4m3(x, tiles, (1, 128))
    assert_nearest_e4m3(x.T, tiles_t, (1, 128))


@FAST
@given(rows=st.integers(1, 300), cols=st.integers(1, 300), bf16=st.booleans(), strided=st.booleans(),
       seed=st.integers(0, 2**16))
def test_block_quantisation_kernel_matches_reference_and_its_transpose_holds_the_same_numbers(
        rows, cols, bf16, strided, seed):
    dtype = torch.bfloat16 if bf16 else torch.float32
    w = random_matrix(cols, rows, seed, dtype).T if strided else random_matrix(rows, cols, seed, dtype)
    blocks, blocks_t = quantize_blocks(w, backend="triton")
    reference, reference_t = quantize_blocks(w, backend="reference")
    assert blocks.block_rows == blocks_t.block_rows == 128
    assert blocks.scale.shape == (math.ceil(rows / 128), math.ceil(cols / 128))
    assert same_values(blocks, reference) and same_values(blocks_t, reference_t)
    assert torch.equal(blocks_t.data.float(), blocks.data.float().T) and blocks_t.data.is_contiguous()
    assert torch.equal(blocks_t.scale, blocks.scale.T)
    assert_nearest_e4m3(w, blocks, (128, 128))


def test_fp16_input_and_dequantize():
    x = random_matrix(40, 200, seed=1)
    tiles = quantize_tiles(x.half(), backend="triton")
    assert same_values(tiles, quantize_tiles(x.half(), backend="reference"))
    expected = tiles.data.double() * expand(tiles.scale, (1, 128), x.shape)
    assert torch.equal(tiles.dequantize(torch.float64), expected.float().double())
    assert tiles.dequantize(torch.bfloat16).dtype == torch.bfloat16 and tiles.shape == (40, 200)


@pytest.mark.parametrize("backend", BACKENDS)
def test_all_zero_tiles_give_zeros_and_a_finite_scale(backend):
    x = random_matrix(3, 300, seed=2)
    x[1] = 0.0
    x[:, 128:256] = 0.0
    tiles = quantize_tiles(x, backend=backend)
    assert torch.isfinite(tiles.scale).all() and (tiles.scale > 0).all()
    assert torch.equal(tiles.dequantize()[1], torch.zeros(300))
    assert torch.equal(tiles.dequantize()[:, 128:256], torch.zeros(3, 128))
    blocks, _ = quantize_blocks(torch.zeros(130, 5), backend=backend)
    assert torch.isfinite(blocks.scale).all() and torch.equal(blocks.dequantize(), torch.zeros(130, 5))


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_largest_element_saturates_at_448_exactly(backend):
    # For this amax, x / (x / 448) rounds to 448.00003 in float32: one float32 ulp past the e4m3 range.
    amax = 130.12820434570312
    assert torch.tensor(amax) / (torch.tensor(amax) / 448) > 448
    x = torch.tensor([[amax, -amax, 1.0, -3.0]])
    data = quantize_tiles(x, backend=backend).data.float()
    assert data[0, 0] == 448.0 and data[0, 1] == -448.0 and not data.isnan().any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_outlier_coarsens_only_its_own_tile(backend):
    x = 0.5 + torch.rand(4, 512, generator=torch.Generator().manual_seed(3))  # relative errors well defined
    x[0, 5] = 1e6
    others = torch.ones_like(x, dtype=torch.bool)
    others[0, :128] = False
    error = (quantize_tiles(x, backend=backend).dequantize() - x).abs() / x
    assert error[others].max() < 2.0**-4  # half of e4m3's relative spacing of 2^-3
    # Its own tile's scale is 1e6 / 448, under which everything below 1e6 / 448 · 2^-10 ≈ 2.2 rounds
    # to zero; one scale for the whole tensor would do that to every element.
    assert torch.equal(error[0, :128][x[0, :128] < 1e6], torch.ones(127))
    per_tensor = Fp8Tiles(*quantize_reference(x, tuple(x.shape)), block_rows=1)
    assert torch.equal(per_tensor.data.float()[others], torch.zeros(int(others.sum())))


def test_quantization_error_follows_the_tile_size_and_the_kernels_rules():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(256, 512, generator=gen) * torch.exp(2 * torch.randn(256, 512, generator=gen))
    errors = [quantization_error(x, tile) for tile in [(1, 32), (1, 128), (1, 512), (128, 128), (256, 512)]]
    assert errors[0] < errors[1] < errors[2] < errors[4] and errors[1] < errors[3] < errors[4]
    for tile, quantized in [((1, 128), quantize_tiles(x, backend="triton")),
                            ((128, 128), quantize_blocks(x, backend="triton")[0])]:
        exact = x.double()
        expected = ((quantized.dequantize().double() - exact).norm() / exact.norm()).item()
        assert quantization_error(x, tile) == pytest.approx(expected, rel=1e-12)
    assert 0.01 < quantization_error(torch.randn(64, 256, generator=gen), (1, 128)) < 0.05  # 3 mantissa bits
    assert quantization_error(torch.zeros(3, 3), (1, 2)) == 0.0
    with pytest.raises(KernelError, match="tile"):
        quantization_error(x, (0, 128))


def test_quantisation_rejects_bad_inputs():
    with pytest.raises(KernelError, match="x must be a 2-D"):
        quantize_tiles(torch.ones(5), backend="triton")
    with pytest.raises(KernelError, match="x has dtype int64"):
        quantize_tiles(torch.ones(2, 2, dtype=torch.int64))
    with pytest.raises(KernelError, match="w has dtype float64"):
        quantize_blocks(torch.ones(2, 2, dtype=torch.float64))
    with pytest.raises(KernelError, match="backend"):
        quantize_tiles(torch.ones(2, 2), backend="cuda")


# GEMM


def gemm_operands(m: int, n: int, k: int, b_block_rows: int, seed: int) -> tuple[Fp8Tiles, Fp8Tiles]:
    a = quantize_tiles(random_matrix(m, k, seed), backend="reference")
    w = random_matrix(n, k, seed + 1)
    if b_block_rows == 1:
        return a, quantize_tiles(w, backend="reference")
    return a, quantize_blocks(w, backend="reference")[0]


def assert_matches_float64(out: torch.Tensor, a: Fp8Tiles, b: Fp8Tiles, rtol: float = 1e-5) -> None:
    """out ≈ the exact product of the dequantised operands, to float32 accumulation error."""
    a64, b64 = a.dequantize(torch.float64), b.dequantize(torch.float64)
    exact = a64 @ b64.T
    bound = rtol * (a64.abs() @ b64.abs().T) + 1e-30
    assert torch.all((out.double() - exact).abs() <= bound)


@pytest.mark.parametrize("b_block_rows", [1, 128])
@pytest.mark.parametrize("m,n,k", [(1, 17, 129), (17, 1, 257), (129, 257, 128), (33, 130, 300)])
def test_gemm_kernel_matches_reference_and_float64(m, n, k, b_block_rows):
    a, b = gemm_operands(m, n, k, b_block_rows, seed=m + n + k)
    out = fp8_gemm(a, b, out_dtype=torch.float32, backend="triton")
    reference = fp8_gemm(a, b, out_dtype=torch.float32, backend="reference")
    assert out.shape == (m, n) and out.dtype == torch.float32
    assert_matches_float64(out, a, b)
    assert_matches_float64(reference, a, b)
    bf16 = fp8_gemm(a, b, backend="triton")
    assert bf16.dtype == torch.bfloat16
    torch.testing.assert_close(bf16, reference.bfloat16(), rtol=2.0**-7,
                               atol=1e-5 * reference.abs().max().item())


@pytest.mark.parametrize("b_block_rows", [1, 128])
def test_gemm_applies_each_k_block_its_own_scales(b_block_rows):
    # The two K blocks differ in magnitude by 2^20 in a and 2^-12 in b, and rows and columns too:
    # a kernel that used one scale per row, or one per operand, would be off by orders of magnitude.
    gen = torch.Generator().manual_seed(5)
    x = torch.randn(40, 256, generator=gen)
    x[:, 128:] *= 2.0**20
    x[::2] *= 2.0**-8
    w = torch.randn(200, 256, generator=gen)
    w[:, :128] *= 2.0**12
    w[130:] *= 2.0**5
    a = quantize_tiles(x, backend="triton")
    b = quantize_tiles(w, backend="triton") if b_block_rows == 1 else quantize_blocks(w, backend="triton")[0]
    assert a.scale[:, 1].min() > 1e3 * a.scale[:, 0].max()
    out = fp8_gemm(a, b, out_dtype=torch.float32, backend="triton")
    assert_matches_float64(out, a, b)
    exact = x.double() @ w.double().T
    assert ((out.double() - exact).norm() / exact.norm()).item() < 0.06


def test_gemm_rejects_bad_operands():
    a, b = gemm_operands(8, 8, 200, 1, seed=6)
    with pytest.raises(KernelError, match="share K"):
        fp8_gemm(a, gemm_operands(8, 8, 100, 1, seed=6)[1])
    with pytest.raises(KernelError, match=r"a\.data has dtype float32"):
        fp8_gemm(a._replace(data=a.data.float()), b)
    with pytest.raises(KernelError, match=r"b\.scale has dtype float64"):
        fp8_gemm(a, b._replace(scale=b.scale.double()))
    with pytest.raises(KernelError, match=r"b\.scale has shape \(8, 1\)"):
        fp8_gemm(a, b._replace(scale=b.scale[:, :1]))
    with pytest.raises(KernelError, match="a must have 1×128 tiles"):
        fp8_gemm(a._replace(block_rows=128, scale=a.scale[:1]), b, backend="triton")
    with pytest.raises(KernelError, match=r"b\.block_rows is 2"):
        fp8_gemm(a, b._replace(block_rows=2))
    with pytest.raises(KernelError, match=r"b\.data must be a 2-D"):
        fp8_gemm(a, b._replace(data=b.data[0]))
    with pytest.raises(KernelError, match="out_dtype int32"):
        fp8_gemm(a, b, out_dtype=torch.int32)


# The fp8 linear layer


def exact_fp8_grads(x2d: torch.Tensor, w: torch.Tensor, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """float64 products of the dequantised operands that fp8_linear's three GEMMs multiply."""
    xq = quantize_reference(x2d, (1, 128))
    wq = quantize_reference(w, (128, 128))
    gq = quantize_reference(grad, (1, 128))
    gtq = quantize_reference(grad.T, (1, 128))
    xtq = quantize_reference(x2d.T, (1, 128))
    deq = [Fp8Tiles(*xq, 1), Fp8Tiles(*wq, 128), Fp8Tiles(*gq, 1), Fp8Tiles(*gtq, 1), Fp8Tiles(*xtq, 1)]
    x64, w64, g64, gt64, xt64 = (t.dequantize(torch.float64) for t in deq)
    return x64 @ w64.T, g64 @ w64, gt64 @ xt64.T


def relative_error(value: torch.Tensor, exact: torch.Tensor) -> float:
    return ((value.double() - exact).norm() / exact.norm()).item()


def test_fp8_linear_is_close_to_the_exact_layer_and_exactly_the_fp8_formula():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(2, 75, 200, generator=gen)
    w = torch.randn(130, 200, generator=gen) / 14
    grad = torch.randn(2, 75, 130, generator=gen)
    exact_y, exact_gx, exact_gw = exact_fp8_grads(x.reshape(150, 200), w, grad.reshape(150, 130))

    results = {}
    for backend in BACKENDS:
        xb, wb = x.clone().requires_grad_(), w.clone().requires_grad_()
        y = fp8_linear(xb, wb, backend=backend)
        y.backward(grad)
        assert y.shape == (2, 75, 130) and xb.grad.shape == x.shape and wb.grad.shape == w.shape
        assert y.dtype == xb.grad.dtype == wb.grad.dtype == torch.float32
        results[backend] = (y.reshape(150, 130), xb.grad.reshape(150, 200), wb.grad)
        for value, formula in zip(results[backend], (exact_y, exact_gx, exact_gw), strict=True):
            assert relative_error(value, formula) < 1e-6

    # Against the unquantised layer: fp8 costs a few percent, no more.
    y, gx, gw = results["triton"]
    x64, w64, g64 = x.reshape(150, 200).double(), w.double(), grad.reshape(150, 130).double()
    for value, true in [(y, x64 @ w64.T), (gx, g64 @ w64), (gw, g64.T @ x64)]:
        assert relative_error(value, true) < 0.06
        assert torch.nn.functional.cosine_similarity(value.double().flatten(), true.flatten(), dim=0) > 0.99
    for triton_value, reference_value in zip(results["triton"], results["reference"], strict=True):
        torch.testing.assert_close(triton_value, reference_value, rtol=1e-5,
                                   atol=1e-6 * reference_value.abs().max().item())


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp8_linear_keeps_only_fp8_copies_and_computes_only_the_asked_gradients(backend):
    x = torch.randn(3, 5, 140)
    w = torch.randn(20, 140, requires_grad=True)
    y = fp8_linear(x, w, backend=backend)
    saved = y.grad_fn.saved_tensors
    assert [(t.dtype, tuple(t.shape)) for t in saved] == [(torch.float8_e4m3fn, (140, 15)),
                                                          (torch.float32, (140, 1))]
    y.sum().backward()
    assert w.grad is not None

    x_only = x.clone().requires_grad_()
    y = fp8_linear(x_only, w.detach(), backend=backend)
    assert [(t.dtype, tuple(t.shape)) for t in y.grad_fn.saved_tensors] == [(torch.float8_e4m3fn, (140, 20)),
                                                                           (torch.float32, (2, 1))]
    y.sum().backward()
    assert x_only.grad.shape == x.shape
    assert fp8_linear(x, w.detach(), backend=backend).grad_fn is None


@pytest.mark.parametrize("backend", BACKENDS)
def test_fp8_linear_output_follows_autocast_and_grads_follow_their_tensors(backend):
    x = torch.randn(4, 130, requires_grad=True)
    w = torch.randn(30, 130, requires_grad=True)
    plain = fp8_linear(x, w, backend=backend)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fp8_linear(x, w, backend=backend)
    assert y.dtype == torch.bfloat16
    # Still multiplied in float32 under autocast: only the final rounding to bf16 differs.
    torch.testing.assert_close(y, plain.bfloat16(), rtol=2.0**-7, atol=1e-5 * plain.abs().max().item())
    y.float().sum().backward()
    assert x.grad.dtype == torch.float32 and w.grad.dtype == torch.float32

    xb = torch.randn(130, dtype=torch.bfloat16, requires_grad=True)  # a single vector works too
    yb = fp8_linear(xb, w, backend=backend)
    assert yb.shape == (30,) and yb.dtype == torch.bfloat16
    yb.sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and xb.grad.shape == (130,)


def test_fp8_linear_rejects_bad_inputs():
    w = torch.randn(8, 16)
    with pytest.raises(KernelError, match="x has 15 features"):
        fp8_linear(torch.randn(2, 15), w)
    with pytest.raises(KernelError, match="weight must be a 2-D"):
        fp8_linear(torch.randn(2, 16), w[0])
    with pytest.raises(KernelError, match="x has dtype float64"):
        fp8_linear(torch.randn(2, 16, dtype=torch.float64), w)
    with pytest.raises(KernelError, match="scalar"):
        fp8_linear(torch.tensor(1.0), w)


def test_fp8_linear_module_is_a_drop_in_linear_sharing_its_weight():
    torch.manual_seed(8)
    linear = torch.nn.Linear(140, 24, bias=False)
    optimizer = torch.optim.SGD(linear.parameters(), lr=0.1)
    layer = Fp8Linear.from_linear(linear, backend="triton")
    assert layer.weight is linear.weight and layer.backend == "triton"
    assert list(layer.state_dict()) == list(linear.state_dict()) == ["weight"]
    assert "backend='triton'" in repr(layer)

    x = torch.randn(2, 3, 140)
    before = layer(x)
    reference = fp8_linear(x, linear.weight, backend="reference")
    torch.testing.assert_close(before, reference, rtol=1e-5, atol=1e-6 * reference.abs().max().item())
    layer(x).square().sum().backward()  # the gradient lands on the shared parameter ...
    optimizer.step()  # ... and the optimiser built on the nn.Linear moves what the fp8 layer uses
    assert not torch.allclose(layer(x), before)

    fresh = Fp8Linear(16, 8)
    assert fresh.backend == "auto" and fresh.bias is None
    fresh.load_state_dict(torch.nn.Linear(16, 8, bias=False).state_dict())
    with pytest.raises(KernelError, match="no bias"):
        Fp8Linear(16, 8, bias=True)
    with pytest.raises(KernelError, match="no bias"):
        Fp8Linear.from_linear(torch.nn.Linear(16, 8))
