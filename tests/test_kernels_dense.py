"""The dense kernels (GEMM, fused RMSNorm, fused linear + cross-entropy) in Triton's interpreter,
checked against float64 maths and against the model code whose maths they take over."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from phasebook.kernels.dispatch import KernelError
from phasebook.kernels.gemm import gemm
from phasebook.kernels.linear_ce import linear_cross_entropy
from phasebook.kernels.rmsnorm import rms_norm
from phasebook.model.config import ModelConfig
from phasebook.model.gpt import GPT, RMSNorm

F32, BF16, F16 = torch.float32, torch.bfloat16, torch.float16


def assert_close_to(actual: torch.Tensor, expected: torch.Tensor, rel: float) -> None:
    """|actual − expected| ≤ rel · max|expected| everywhere (a scale-aware tolerance)."""
    scale = expected.abs().max().item() or 1.0
    error = (actual.double() - expected.double()).abs().max().item()
    assert error <= rel * scale, f"max error {error:.3g} > {rel:g} · {scale:.3g}"


# ---- GEMM ----------------------------------------------------------------------------------------


def float64_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.double() @ b.double()


@pytest.mark.parametrize("m, k, n", [(33, 70, 45), (64, 64, 64), (1, 1, 1), (5, 100, 1)])
def test_gemm_fp32_matches_float64(m: int, k: int, n: int) -> None:
    torch.manual_seed(0)
    a, b = torch.randn(m, k), torch.randn(k, n)
    c = gemm(a, b, backend="triton")
    assert c.dtype == F32 and c.shape == (m, n)
    assert_close_to(c, float64_product(a, b), 1e-5)


def test_gemm_bf16_matches_float64() -> None:
    # bf16 products are exact in fp32, so with an fp32 output only the fp32 summation differs
    # from float64: a garbage tl.dot (the interpreter's bf16 quirk) cannot pass this.
    torch.manual_seed(1)
    a, b = torch.randn(40, 96).to(BF16), torch.randn(96, 50).to(BF16)
    expected = float64_product(a, b)
    assert_close_to(gemm(a, b, out_dtype=F32, backend="triton"), expected, 1e-5)
    c = gemm(a, b, backend="triton")
    assert c.dtype == BF16
    assert_close_to(c, expected, 2**-8)  # one bf16 rounding of the result


@settings(max_examples=15, deadline=None)
@given(m=st.integers(1, 70), k=st.integers(1, 70), n=st.integers(1, 70),
       dtype=st.sampled_from([F32, BF16, F16]), a_transposed=st.booleans(), b_transposed=st.booleans())
def test_gemm_any_shape_and_layout(m: int, k: int, n: int, dtype: torch.dtype, a_transposed: bool,
                                   b_transposed: bool) -> None:
    a = torch.randn(k, m).t() if a_transposed else torch.randn(m, k)
    b = torch.randn(n, k).t() if b_transposed else torch.randn(k, n)
    a, b = a.to(dtype), b.to(dtype)
    c = gemm(a, b, out_dtype=F32, backend="triton")
    assert c.shape == (m, n)
    assert_close_to(c, float64_product(a, b), 1e-5)


def test_gemm_takes_a_transposed_view_without_copying() -> None:
    torch.manual_seed(2)
    weight = torch.randn(45, 70).to(BF16)  # (N, K), as an nn.Linear weight
    x = torch.randn(33, 70).to(BF16)
    assert not weight.t().is_contiguous()
    c = gemm(x, weight.t(), out_dtype=F32, backend="triton")
    assert_close_to(c, float64_product(x, weight.t()), 1e-5)


def test_gemm_reference_matches_float64() -> None:
    a, b = torch.randn(7, 9).to(BF16), torch.randn(9, 4).to(BF16)
    c = gemm(a, b, out_dtype=F32)  # CPU tensors under "auto": the reference
    assert_close_to(c, float64_product(a, b), 1e-6)


@pytest.mark.parametrize("a, b, kwargs, message", [
    (torch.randn(3, 4), torch.randn(5, 2), {}, "a's columns"),
    (torch.randn(2, 3, 4), torch.randn(4, 2), {}, "a must be a 2-D"),
    (torch.randn(3, 4), torch.randn(4), {}, "b must be a 2-D"),
    (torch.ones(3, 4, dtype=torch.int32), torch.ones(4, 2, dtype=torch.int32), {}, "a has dtype int32"),
    (torch.randn(3, 4, dtype=torch.float64), torch.randn(4, 2), {}, "a has dtype float64"),
    (torch.randn(3, 4), torch.randn(4, 2).to(BF16), {}, "share one dtype"),
    (torch.randn(3, 4), torch.randn(4, 2), {"out_dtype": torch.int8}, "out_dtype"),
    (torch.randn(3, 4), torch.randn(4, 2), {"backend": "cuda"}, "backend 'cuda' is unknown"),
])
def test_gemm_rejects_bad_input(a, b, kwargs, message) -> None:
    with pytest.raises(KernelError, match=message):
        gemm(a, b, **({"backend": "triton"} | kwargs))


# ---- RMSNorm -------------------------------------------------------------------------------------


def float64_rms_norm(x: torch.Tensor, weight: torch.Tensor, grad_y: torch.Tensor, eps: float = 1e-5):
    """y, grad_x, grad_weight of the formula in float64 autograd."""
    x64 = x.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    y = x64 / torch.sqrt(x64.pow(2).mean(-1, keepdim=True) + eps) * w64
    y.backward(grad_y.double())
    return y.detach(), x64.grad, w64.grad


@pytest.mark.parametrize("shape, x_dtype, w_dtype, rel", [
    ((2, 3, 37), F32, F32, 1e-5),  # leading dims, hidden size not a power of two
    ((20, 1000), F32, F32, 1e-5),  # more row tiles than backward programs: each sums several
    ((1, 3), F32, F32, 1e-5),
    ((9, 300), BF16, F32, 2**-7),  # mixed precision: fp32 output, bf16 grad_x
    ((5, 64), BF16, BF16, 2**-7),
])
def test_rms_norm_matches_float64(shape, x_dtype, w_dtype, rel) -> None:
    torch.manual_seed(3)
    x = torch.randn(shape).to(x_dtype).requires_grad_()
    weight = (1 + 0.3 * torch.randn(shape[-1])).to(w_dtype).requires_grad_()
    y = rms_norm(x, weight, backend="triton")
    assert y.dtype == torch.promote_types(x_dtype, w_dtype) and y.shape == x.shape
    grad_y = torch.randn(shape).to(y.dtype)
    y.backward(grad_y)
    y64, grad_x64, grad_w64 = float64_rms_norm(x, weight, grad_y)
    assert_close_to(y, y64, rel)
    assert x.grad.dtype == x_dtype and weight.grad.dtype == w_dtype
    assert_close_to(x.grad, grad_x64, rel)
    assert_close_to(weight.grad, grad_w64, rel)


@pytest.mark.parametrize("x_dtype, w_dtype", [(F32, F32), (BF16, F32), (BF16, BF16)])
def test_rms_norm_matches_the_model_rmsnorm(x_dtype, w_dtype) -> None:
    torch.manual_seed(4)
    module = RMSNorm(48, eps=1e-6).to(w_dtype)
    with torch.no_grad():
        module.weight.normal_(1.0, 0.3)
    x = torch.randn(3, 4, 48).to(x_dtype)
    y = rms_norm(x, module.weight, 1e-6, backend="triton")
    expected = module(x)
    # The model's formula, written out: the normalised x is rounded to x's dtype before the weight.
    x32 = x.float()
    formula = (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)).type_as(x) * module.weight
    assert y.dtype == expected.dtype == formula.dtype
    # Equal up to the last bit of 1/rms, which can move one rounding of x̂ by one bf16 step.
    tolerance = 1e-6 if x_dtype == F32 else 2**-7
    torch.testing.assert_close(y, formula, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(expected, formula, rtol=tolerance, atol=tolerance)


def test_rms_norm_takes_a_non_contiguous_input() -> None:
    torch.manual_seed(5)
    x = torch.randn(37, 6).t().requires_grad_()  # (6, 37), rows not contiguous
    weight = torch.rand(37, requires_grad=True)
    grad_y = torch.randn(6, 37)
    rms_norm(x, weight, backend="triton").backward(grad_y)
    y64, grad_x64, grad_w64 = float64_rms_norm(x, weight, grad_y)
    assert_close_to(rms_norm(x, weight, backend="triton").detach(), y64, 1e-5)
    assert_close_to(x.grad, grad_x64, 1e-5)
    assert_close_to(weight.grad, grad_w64, 1e-5)


@pytest.mark.parametrize("x, weight, message", [
    (torch.randn(4, 8), torch.ones(7), "weight has shape"),
    (torch.randn(4, 8), torch.ones(1, 8), "weight has shape"),
    (torch.tensor(1.0), torch.ones(1), "weight has shape"),
    (torch.ones(4, 8, dtype=torch.int64), torch.ones(8), "x has dtype int64"),
    (torch.randn(4, 8, dtype=torch.float64), torch.ones(8), "x has dtype float64"),
    (torch.randn(4, 8), torch.ones(8, dtype=torch.float64), "weight has dtype float64"),
])
def test_rms_norm_rejects_bad_input(x, weight, message) -> None:
    with pytest.raises(KernelError, match=message):
        rms_norm(x, weight, backend="triton")


# ---- linear + cross-entropy ----------------------------------------------------------------------


def float64_linear_ce(h, weight, targets, z_loss, upstream, ignore_index=-100):
    """loss, ce_loss, grad_h, grad_weight of `upstream · loss` in float64 autograd, from the definition."""
    h64 = h.detach().double().requires_grad_()
    w64 = weight.detach().double().requires_grad_()
    logits = h64 @ w64.t()
    valid = targets != ignore_index
    lse = torch.logsumexp(logits, -1)
    picked = logits.gather(-1, torch.where(valid, targets, 0).unsqueeze(-1)).squeeze(-1)
    count = max(int(valid.sum()), 1)
    ce_loss = ((lse - picked) * valid).sum() / count
    loss = ce_loss + z_loss * (lse.pow(2) * valid).sum() / count
    (upstream * loss).backward()
    return loss.item(), ce_loss.item(), h64.grad, w64.grad


def lm_inputs(n: int, d: int, v: int, dtype: torch.dtype, seed: int):
    """Hidden states, an LM head and targets with every third one ignored."""
    torch.manual_seed(seed)
    h = torch.randn(n, d).to(dtype).requires_grad_()
    weight = (0.3 * torch.randn(v, d)).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,))
    targets[::3] = -100
    return h, weight, targets


@pytest.mark.parametrize("dtype, n, d, v, z_loss, chunk_size", [
    (F32, 37, 48, 300, 0.0, None),  # one chunk
    (F32, 37, 48, 300, 1e-2, 7),  # chunks that do not divide N
    (F32, 5, 16, 129, 0.1, 1),  # one row per chunk; V = 2^7 + 1
    (BF16, 20, 32, 200, 1e-3, 6),
])
def test_linear_cross_entropy_matches_float64(dtype, n, d, v, z_loss, chunk_size) -> None:
    h, weight, targets = lm_inputs(n, d, v, dtype, seed=6)
    loss, ce_loss = linear_cross_entropy(h, weight, targets, z_loss=z_loss, chunk_size=chunk_size,
                                         backend="triton")
    (loss * 3).backward()  # an upstream gradient other than 1
    loss64, ce64, grad_h64, grad_w64 = float64_linear_ce(h, weight, targets, z_loss, upstream=3)
    assert loss.shape == ce_loss.shape == () and loss.dtype == ce_loss.dtype == F32
    assert not ce_loss.requires_grad
    # The logits are fp32 sums of exact products, so the loss is fp32-accurate even for bf16.
    assert loss.item() == pytest.approx(loss64, rel=1e-5)
    assert ce_loss.item() == pytest.approx(ce64, rel=1e-5)
    assert h.grad.dtype == dtype and weight.grad.dtype == dtype
    rel = 1e-5 if dtype == F32 else 2**-6  # bf16: the gradient of the logits is rounded to bf16
    assert_close_to(h.grad, grad_h64, rel)
    assert_close_to(weight.grad, grad_w64, rel)
    assert (h.grad[::3] == 0).all()  # ignored rows carry no gradient


def test_linear_cross_entropy_reference_matches_float64() -> None:
    h, weight, targets = lm_inputs(11, 8, 30, F32, seed=7)
    loss, ce_loss = linear_cross_entropy(h, weight, targets, z_loss=0.05)  # CPU under "auto"
    (loss * 3).backward()
    loss64, ce64, grad_h64, grad_w64 = float64_linear_ce(h, weight, targets, 0.05, upstream=3)
    assert (loss.item(), ce_loss.item()) == pytest.approx((loss64, ce64), rel=1e-6)
    assert not ce_loss.requires_grad
    assert_close_to(h.grad, grad_h64, 1e-6)
    assert_close_to(weight.grad, grad_w64, 1e-6)


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_linear_cross_entropy_of_all_ignored_targets_is_zero(backend) -> None:
    h, weight, _ = lm_inputs(6, 8, 20, F32, seed=8)
    loss, ce_loss = linear_cross_entropy(h, weight, torch.full((6,), -100), z_loss=0.1, chunk_size=4,
                                         backend=backend)
    loss.backward()
    assert loss.item() == 0.0 and ce_loss.item() == 0.0
    assert (h.grad == 0).all() and (weight.grad == 0).all()


def test_linear_cross_entropy_computes_only_the_gradients_asked_for() -> None:
    h, weight, targets = lm_inputs(9, 8, 20, F32, seed=9)
    frozen_h = h.detach()
    loss, _ = linear_cross_entropy(frozen_h, weight, targets, backend="triton")
    loss.backward()
    _, _, _, grad_w64 = float64_linear_ce(frozen_h, weight, targets, 0.0, upstream=1)
    assert_close_to(weight.grad, grad_w64, 1e-5)
    with torch.no_grad():
        loss_no_grad, _ = linear_cross_entropy(h, weight, targets, backend="triton")
    assert not loss_no_grad.requires_grad
    assert loss_no_grad.item() == pytest.approx(loss.item(), rel=1e-6)


def test_linear_cross_entropy_equals_the_model_loss() -> None:
    torch.manual_seed(10)
    cfg = ModelConfig(vocab_size=97, n_layer=1, n_head=2, d_model=32, max_seq_len=16, z_loss=1e-3)
    model = GPT(cfg)
    idx = torch.randint(0, 97, (2, 12))
    targets = torch.randint(0, 97, (2, 12))
    targets[0, :4] = -100
    hidden = []
    model.norm.register_forward_hook(lambda _module, _inputs, output: hidden.append(output))
    out = model(idx, targets, return_logits=True)  # the path that builds all the logits
    h = hidden[0].reshape(-1, cfg.d_model)
    loss, ce_loss = linear_cross_entropy(h, model.lm_head.weight, targets.reshape(-1), z_loss=cfg.z_loss,
                                         chunk_size=5, backend="triton")
    assert loss.item() == pytest.approx(out.loss.item(), rel=1e-5)
    assert ce_loss.item() == pytest.approx(out.ce_loss.item(), rel=1e-5)


@pytest.mark.parametrize("h, weight, targets, kwargs, message", [
    (torch.randn(4, 8), torch.randn(10, 7), torch.zeros(4, dtype=torch.long), {}, "weight has shape"),
    (torch.randn(4, 8), torch.randn(10, 8), torch.zeros(5, dtype=torch.long), {}, "targets has shape"),
    (torch.randn(4, 8), torch.randn(10, 8), torch.zeros(4), {}, "targets has dtype float32"),
    (torch.randn(2, 4, 8), torch.randn(10, 8), torch.zeros(8, dtype=torch.long), {}, "h must be a 2-D"),
    (torch.randn(4, 8, dtype=torch.float64), torch.randn(10, 8), torch.zeros(4, dtype=torch.long), {},
     "h has dtype float64"),
    (torch.randn(4, 8).half(), torch.randn(10, 8).half(), torch.zeros(4, dtype=torch.long), {},
     "h has dtype float16"),
    (torch.randn(4, 8), torch.randn(10, 8).to(BF16), torch.zeros(4, dtype=torch.long), {}, "share one dtype"),
    (torch.randn(4, 8), torch.randn(10, 8), torch.zeros(4, dtype=torch.long), {"z_loss": -1.0}, "z_loss"),
    (torch.randn(4, 8), torch.randn(10, 8), torch.zeros(4, dtype=torch.long), {"chunk_size": 0},
     "chunk_size"),
])
def test_linear_cross_entropy_rejects_bad_input(h, weight, targets, kwargs, message) -> None:
    with pytest.raises(KernelError, match=message):
        linear_cross_entropy(h, weight, targets, **({"backend": "triton"} | kwargs))


@pytest.mark.parametrize("backend", ["triton", "reference"])
def test_linear_cross_entropy_of_a_target_out_of_range_is_nan(backend) -> None:
    h, weight, targets = lm_inputs(4, 8, 20, F32, seed=11)
    targets[1] = 20
    loss, ce_loss = linear_cross_entropy(h, weight, targets, backend=backend)
    assert loss.isnan() and ce_loss.isnan()
