"""The networks of nn/ directly: the reference presets chosen by sample shape, encoders giving four
``(B, d)`` heads for images and volumes of several sizes, decoders giving the input's shape with
the chosen output range, split encoders (c and z from separate trunks), the MLP encoder, and clear
errors for unknown names."""

import pytest
import torch

from dualcontrast.errors import ConfigError
from dualcontrast.nn import GaussianHeads, build_decoder, build_encoder, resolve_arch
from dualcontrast.nn.mlp import MLPEncoder, make_activation


@pytest.mark.parametrize(
    ("shape", "arch"),
    [((1, 28, 28), "mnist"), ((1, 64, 64), "linemod"), ((3, 32, 32), "linemod"), ((1, 32, 32, 32), "subtomo")],
)
def test_auto_picks_the_preset_by_shape(shape, arch):
    assert resolve_arch("auto", shape) == arch


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 40, 40), (3, 64, 64), (1, 16, 16, 16), (1, 32, 32, 32)])
def test_encoder_heads_have_the_code_sizes(shape):
    torch.manual_seed(0)
    enc = build_encoder("auto", shape, 5, 3)
    heads = enc(torch.randn(2, *shape))
    assert [tuple(h.shape) for h in heads] == [(2, 5), (2, 5), (2, 3), (2, 3)]


@pytest.mark.parametrize("shape", [(1, 28, 28), (1, 16, 16, 16)])
def test_split_encoder_codes_depend_only_on_their_own_trunk(shape):
    torch.manual_seed(0)
    enc = build_encoder("auto", shape, 5, 3, split=True)
    c_mu, c_logvar, z_mu, z_logvar = enc(torch.randn(2, *shape))
    assert [tuple(h.shape) for h in (c_mu, c_logvar, z_mu, z_logvar)] == [(2, 5), (2, 5), (2, 3), (2, 3)]
    own = {"c": [*enc.features.parameters(), *enc.heads.parameters()],
           "z": [*enc.z_features.parameters(), *enc.z_heads.parameters()]}
    for code, loss, other in (("c", c_mu.sum() + c_logvar.sum(), "z"), ("z", z_mu.sum() + z_logvar.sum(), "c")):
        grads = torch.autograd.grad(loss, own[code] + own[other], allow_unused=True, retain_graph=True)
        mine, theirs = grads[: len(own[code])], grads[len(own[code]) :]
        assert all(g is not None and g.abs().sum() > 0 for g in mine[-2:]), code
        assert all(g is None or not g.any() for g in theirs), code


@pytest.mark.parametrize("kind", ["mlp", "conv"])
@pytest.mark.parametrize(("shape", "output"), [((1, 28, 28), "sigmoid"), ((1, 16, 16, 16), "linear")])
def test_decoder_gives_the_sample_shape_and_output_range(kind, shape, output):
    torch.manual_seed(0)
    dec = build_decoder("auto", kind, shape, 4, 2, output=output, **({"hidden": (32,)} if kind == "mlp" else {}))
    with torch.no_grad():
        x = dec(torch.randn(3, 4) * 10, torch.randn(3, 2) * 10)
    assert x.shape == (3, *shape)
    if output == "sigmoid":
        assert 0 <= float(x.min()) and float(x.max()) <= 1
    else:
        assert float(x.min()) < 0  # linear: unbounded


def test_gaussian_heads_split_one_linear_layer():
    heads = GaussianHeads(8, 3, 2)
    h = torch.randn(4, 8)
    parts = heads(h)
    torch.testing.assert_close(torch.cat(parts, dim=1), heads.linear(h))


def test_mlp_encoder_heads():
    enc = MLPEncoder((1, 8, 8), 3, 2, hidden=(16,))
    assert [tuple(t.shape) for t in enc(torch.randn(5, 1, 8, 8))] == [(5, 3), (5, 3), (5, 2), (5, 2)]


def test_unknown_names_are_clear_errors():
    with pytest.raises(ConfigError, match=r"unknown model\.arch .resnet."):
        resolve_arch("resnet", (1, 28, 28))
    with pytest.raises(ConfigError, match=r"unknown model\.decoder .gan."):
        build_decoder("auto", "gan", (1, 28, 28), 2, 2, output="sigmoid")
    with pytest.raises(ValueError, match="unknown activation 'gelu'"):
        make_activation("gelu")
    # A YAML typo such as {split:true} (no space) arrives as the key 'split:true'.
    with pytest.raises(ConfigError, match=r"model\.encoder_options: unknown option\(s\) 'split:true'; known: .*split"):
        build_encoder("auto", (1, 28, 28), 2, 2, **{"split:true": None})
    with pytest.raises(ConfigError, match=r"model\.decoder_options: unknown option\(s\) 'width'"):
        build_decoder("auto", "conv", (1, 28, 28), 2, 2, output="sigmoid", width=3)
