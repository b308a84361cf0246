"""The concise MLP builder and its configuration."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mlplab.errors import ConfigError
from mlplab.models import ModelConfig, build_mlp, parse_init


def linears(net):
    return [m for m in net if isinstance(m, nn.Linear)]


def test_structure_matches_the_config(gen):
    net = build_mlp(ModelConfig(hidden=(64, 32), activation="tanh", dropout=(0.2, 0.5)), gen)
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Flatten", "Linear", "Tanh", "Dropout", "Linear", "Tanh", "Dropout", "Linear"]
    assert [(l.in_features, l.out_features) for l in linears(net)] == [(784, 64), (64, 32), (32, 10)]
    assert [m.p for m in net if isinstance(m, nn.Dropout)] == [0.2, 0.5]
    assert net(torch.rand(5, 28, 28)).shape == (5, 10)  # images are flattened


def test_one_dropout_value_applies_to_every_hidden_layer(gen):
    net = build_mlp(ModelConfig(hidden=(8, 8, 8), dropout=0.3), gen)
    assert [m.p for m in net if isinstance(m, nn.Dropout)] == [0.3, 0.3, 0.3]


@pytest.mark.parametrize(
    ("init", "expected_std"),
    [
        ("normal:0.01", lambda n_in, n_out: 0.01),
        ("xavier", lambda n_in, n_out: math.sqrt(2 / (n_in + n_out))),
        ("xavier_normal", lambda n_in, n_out: math.sqrt(2 / (n_in + n_out))),
        ("he", lambda n_in, n_out: math.sqrt(2 / n_in)),
    ],
)
def test_initializers_draw_the_documented_variance(init, expected_std, gen):
    net = build_mlp(ModelConfig(hidden=(512,), init=init, n_inputs=1024, n_outputs=256), gen)
    for layer in linears(net):
        n_out, n_in = layer.weight.shape
        std = layer.weight.std().item()
        assert std == pytest.approx(expected_std(n_in, n_out), rel=0.03)
        assert layer.weight.mean().abs().item() < 3 * std / math.sqrt(layer.weight.numel())
        assert torch.all(layer.bias == 0)
    if init == "xavier":  # uniform on [-a, a], a = sqrt(6 / (n_in + n_out)) (Glorot & Bengio 2010)
        w = linears(net)[0].weight
        assert w.abs().max().item() <= math.sqrt(6 / (1024 + 512))


def test_initialization_is_reproducible_and_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    a = build_mlp(ModelConfig(), torch.Generator().manual_seed(7))
    b = build_mlp(ModelConfig(), torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_bias_false_builds_bias_free_layers_with_the_same_weights():
    # the book's polynomial net (d2l 4.4): nn.Linear(d, 1, bias=False)
    config = ModelConfig(hidden=(8,), n_inputs=4, n_outputs=1)
    with_bias = build_mlp(config, torch.Generator().manual_seed(3))
    without = build_mlp(ModelConfig(hidden=(8,), n_inputs=4, n_outputs=1, bias=False), torch.Generator().manual_seed(3))
    assert all(lin.bias is None for lin in linears(without))
    assert [n for n, _ in without.named_parameters()] == ["1.weight", "3.weight"]
    for a, b in zip(linears(with_bias), linears(without)):
        assert torch.equal(a.weight, b.weight)  # biases start at 0 and take no draw
    assert without(torch.zeros(3, 4)).abs().max().item() == 0.0


def test_prelu_slope_starts_at_a_quarter(gen):
    net = build_mlp(ModelConfig(hidden=(4,), activation="prelu"), gen)
    assert net[2].weight.item() == 0.25


@pytest.mark.parametrize(
    ("kwargs", "field", "hint"),
    [
        ({"hidden": (256, 0)}, "hidden[1]", "integers >= 1"),
        ({"hidden": (2.5,)}, "hidden[0]", "integers >= 1"),
        ({"activation": "swish"}, "activation", "relu, sigmoid, tanh, prelu"),
        ({"dropout": (1.5,)}, "dropout[0]", "[0, 1)"),
        ({"dropout": (1.0,)}, "dropout[0]", "[0, 1)"),
        ({"dropout": (-0.1,)}, "dropout[0]", "[0, 1)"),
        ({"hidden": (8, 8, 8), "dropout": (0.1, 0.2)}, "dropout", "one per hidden layer (3)"),
        ({"hidden": (), "dropout": (0.1,)}, "dropout", "at least one hidden layer"),
        ({"init": "normal"}, "init", "normal:STD"),
        ({"init": "normal:-1"}, "init", "> 0"),
        ({"init": "orthogonal"}, "init", "xavier"),
        ({"n_inputs": 0}, "n_inputs", ">= 1"),
        ({"bias": "no"}, "bias", "true or false"),
    ],
)
def test_bad_model_configs_name_field_value_and_range(kwargs, field, hint):
    with pytest.raises(ConfigError) as info:
        ModelConfig(**kwargs)
    message = str(info.value)
    assert message.startswith(f"{field} = ")
    assert hint in message


def test_init_spec_round_trips_to_text():
    assert str(parse_init("normal:0.01")) == "normal:0.01"
    assert str(parse_init(" XAVIER ")) == "xavier"
