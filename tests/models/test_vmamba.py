"""VMamba backbones: official key names and shapes, parameter counts, any input size, round trips."""

import pytest
import torch

import audiomamba
from audiomamba.models.vmamba import VMAMBA_CONFIGS, VMamba, VMambaConfig

# The official table of VMamba (Liu et al., 2024): millions of parameters, ImageNet-1K classifier.
OFFICIAL_PARAMS = {
    "vmamba_tiny_v0": 22.9, "vmamba_small_v0": 44.4, "vmamba_base_v0": 76.3,
    "vmamba_tiny_s2l5": 30.7, "vmamba_small_s2l15": 50.2, "vmamba_base_s2l15": 88.6,
    "vmamba_tiny_s1l8": 30.2, "vmamba_small_s1l20": 49.0, "vmamba_base_s1l20": 86.6,
}


def test_registry_lists_every_official_config():
    names = audiomamba.list_models("vmamba_*")
    assert sorted(names) == sorted(OFFICIAL_PARAMS)
    assert set(audiomamba.list_models("audiomamba_*")) == {
        "audiomamba_nano", "audiomamba_micro", "audiomamba_micro_v2", "audiomamba_tiny", "audiomamba_tiny_v2",
        "audiomamba_small", "audiomamba_base"}


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_parameter_counts_match_the_official_table(name):
    with torch.device("meta"):
        model = audiomamba.create_model(name)
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n / OFFICIAL_PARAMS[name] - 1) < 0.01, n


def _expected_keys(cfg: VMambaConfig, num_classes=1000):
    """Official state-dict keys and shapes written out from the official VMamba code (Liu et al., 2024),
    independently of the model code."""
    d, n, v0 = cfg.dim, cfg.d_state, cfg.version == "v0"
    keys = {}
    if v0:
        keys |= {"patch_embed.0.weight": (d, 3, 4, 4), "patch_embed.0.bias": (d,), "patch_embed.2.weight": (d,), "patch_embed.2.bias": (d,)}
    else:
        keys |= {"patch_embed.0.weight": (d // 2, 3, 3, 3), "patch_embed.0.bias": (d // 2,), "patch_embed.2.weight": (d // 2,),
                 "patch_embed.2.bias": (d // 2,), "patch_embed.5.weight": (d, d // 2, 3, 3), "patch_embed.5.bias": (d,),
                 "patch_embed.7.weight": (d,), "patch_embed.7.bias": (d,)}
    for i, depth in enumerate(cfg.depths):
        c = d * 2**i
        e, r = int(cfg.ssm_ratio * c), -(-c // 16)
        for j in range(depth):
            p = f"layers.{i}.blocks.{j}."
            keys |= {p + "norm.weight": (c,), p + "norm.bias": (c,),
                     p + "op.in_proj.weight": (2 * e if v0 else e, c), p + "op.conv2d.weight": (e, 1, 3, 3),
                     p + "op.x_proj_weight": (4, r + 2 * n, e), p + "op.dt_projs_weight": (4, e, r), p + "op.dt_projs_bias": (4, e),
                     p + "op.A_logs": (4 * e, n), p + "op.Ds": (4 * e,), p + "op.out_norm.weight": (e,), p + "op.out_norm.bias": (e,),
                     p + "op.out_proj.weight": (c, e)}
            if v0:
                keys[p + "op.conv2d.bias"] = (e,)
            if cfg.mlp_ratio > 0:
                h = int(c * cfg.mlp_ratio)
                keys |= {p + "norm2.weight": (c,), p + "norm2.bias": (c,), p + "mlp.fc1.weight": (h, c), p + "mlp.fc1.bias": (h,),
                         p + "mlp.fc2.weight": (c, h), p + "mlp.fc2.bias": (c,)}
        if i < len(cfg.depths) - 1:
            p = f"layers.{i}.downsample."
            if v0:
                keys |= {p + "norm.weight": (4 * c,), p + "norm.bias": (4 * c,), p + "reduction.weight": (2 * c, 4 * c)}
            else:
                keys |= {p + "1.weight": (2 * c, c, 3, 3), p + "1.bias": (2 * c,), p + "3.weight": (2 * c,), p + "3.bias": (2 * c,)}
    f = d * 2 ** (len(cfg.depths) - 1)
    keys |= {"classifier.norm.weight": (f,), "classifier.norm.bias": (f,), "classifier.head.weight": (num_classes, f),
             "classifier.head.bias": (num_classes,)}
    return keys


@pytest.mark.parametrize("name", ["vmamba_tiny_v0", "vmamba_tiny_s1l8", "vmamba_tiny_s2l5", "vmamba_base_s1l20"])
def test_state_dict_has_official_names_and_shapes(name):
    with torch.device("meta"):
        model = audiomamba.create_model(name)
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert got == _expected_keys(VMAMBA_CONFIGS[name])


SMALL = {
    "v0": VMambaConfig((1, 1, 2, 1), 16, 4, 2.0, 0.0, "v0"),
    "v2": VMambaConfig((1, 1, 2, 1), 16, 1, 1.0, 4.0, "v2"),
}


@pytest.mark.parametrize("version", ["v0", "v2"])
@pytest.mark.parametrize("hw", [(32, 32), (64, 96), (96, 32)])
def test_any_size_divisible_by_32_and_strict_round_trip(version, hw):
    model = VMamba(SMALL[version], num_classes=10).eval()
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        out = model(x)
        feats = model.forward_features(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    assert feats.shape == (2, hw[0] // 32, hw[1] // 32, 128)
    clone = VMamba(SMALL[version], num_classes=10).eval()
    clone.load_state_dict(model.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(clone(x), out)
    # Batch independence: one example alone gives the same logits.
    with torch.no_grad():
        torch.testing.assert_close(model(x[1:]), out[1:], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", sorted(OFFICIAL_PARAMS))
def test_every_vmamba_builds_and_runs(name):
    model = audiomamba.create_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 32, 64))
    assert out.shape == (1, 3) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["vmamba_tiny_v0", "vmamba_tiny_s1l8", "vmamba_tiny_s2l5"])
def test_vmamba_trains(name):
    model = audiomamba.create_model(name, num_classes=3).train()
    x = torch.randn(1, 3, 32, 32)
    loss = model(x).logsumexp(-1).sum()
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert all(torch.isfinite(g).all() for g in grads)


def test_bad_input_and_names():
    model = VMamba(SMALL["v0"], num_classes=10)
    with pytest.raises(ValueError, match="expects images"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(KeyError, match="unknown model 'vmamba_huge'"):
        audiomamba.create_model("vmamba_huge")
    with pytest.raises(TypeError, match="unknown argument"):
        audiomamba.create_model("vmamba_tiny_v0", colour="red")


@pytest.mark.parametrize("d_state", [1, 16])
def test_composed_dt_projection_is_the_low_rank_one(d_state):
    """The GPU computes delta with the composed weight dt_projs @ x_proj[:, :r] in one GEMM; it must be the same
    map as the CPU's rank-r form, with the same gradients for every projection weight (float64)."""
    from audiomamba.models.vmamba import SS2D
    from audiomamba.ops import expand_delta

    torch.manual_seed(0)
    op = SS2D(24, d_state=d_state, ssm_ratio=2.0).double()
    xl = torch.randn(2, 5, 7, op.d_inner, dtype=torch.float64, requires_grad=True)
    results = []
    for composed in (False, True):
        delta, Bs, Cs, delta_proj = op.scan_inputs(xl, composed=composed)
        if delta_proj is not None:  # the rank-r factors, expanded as the scan backends expand them
            delta = expand_delta(delta.permute(0, 3, 4, 1, 2), delta_proj).permute(0, 3, 4, 1, 2)
        outs = (delta, Bs, Cs)
        loss = sum((o * torch.randn(o.shape, generator=torch.Generator().manual_seed(i), dtype=o.dtype)).sum()
                   for i, o in enumerate(outs))
        grads = torch.autograd.grad(loss, (xl, op.x_proj_weight, op.dt_projs_weight))
        results.append(([o.detach() for o in outs], grads))
    (outs_lr, g_lr), (outs_c, g_c) = results
    for a, b in zip(outs_lr, outs_c):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert outs_c[0].stride(-1) == 1 and outs_c[0].stride(-3) == 4 * (op.d_inner + 2 * d_state)  # views of one row
    for a, b in zip(g_lr, g_c):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
