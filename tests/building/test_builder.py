import pytest
import torch
from torch import nn

import netcfg
from netcfg.building.builder import build_spec, sample_input
from netcfg.errors import BuildError
from netcfg.spec.loader import load_spec

HEAD = "netcfg: 1\ninput: {shape: [2, 20]}\n"


def make(write_spec, body: str, head: str = HEAD, device: str = "cpu", seed=None):
    return build_spec(load_spec(write_spec(head + body)), device=device, seed=seed)


def test_sizes_are_inferred_into_ordinary_layers(write_spec):
    built = make(write_spec, "model: {type: sequential, layers: [{type: linear, out_features: 256}, {type: relu}, "
                             "{type: linear, out_features: 10}]}")  # fmt: skip
    model = built.model
    assert isinstance(model[0], nn.Linear) and type(model[0]) is nn.Linear
    assert model[0].weight.shape == (256, 20) and model[2].weight.shape == (10, 256)
    assert not any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters())
    assert model(torch.rand(2, 20)).shape == (2, 10)
    assert (built.visits["0"].in_shapes, built.visits["0"].out_shape) == ([(2, 20)], (2, 256))


def test_meta_build_allocates_nothing(write_spec):
    built = make(write_spec, "model: {type: linear, out_features: 100000}", device="meta")
    assert all(p.device.type == "meta" for p in built.model.parameters())
    assert sum(p.numel() for p in built.model.parameters()) == 100000 * 21


def test_equal_seeds_give_identical_weights_and_other_seeds_do_not(write_spec):
    path = write_spec(HEAD + "model: {type: sequential, layers: [{type: linear, out_features: 8}, {type: relu}, "
                              "{type: dense_relu, units: 3}, {type: fixed_matmul, out_features: 2}]}")  # fmt: skip
    a, b, c = (netcfg.build(path, device="cpu", seed=s).state_dict() for s in (1, 1, 2))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0.weight"], c["0.weight"])


def test_default_init_matches_pytorch_constructing_in_order(write_spec):
    # The builder's seeded default pass consumes the RNG like hand-written construction does.
    model = make(write_spec, "model: {type: sequential, layers: [{type: linear, out_features: 8}, {type: relu}, "
                             "{type: linear, out_features: 1}]}", seed=5).model  # fmt: skip
    torch.manual_seed(5)
    twin = nn.Sequential(nn.Linear(20, 8), nn.ReLU(), nn.Linear(8, 1))
    for (k, v), (k2, v2) in zip(model.state_dict().items(), twin.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


def test_stated_input_size_is_checked_and_the_error_names_path_and_shapes(write_spec):
    with pytest.raises(BuildError) as err:
        make(write_spec, "model:\n  type: sequential\n  layers:\n    - {type: linear, out_features: 8}\n"
                         "    - {type: linear, in_features: 30, out_features: 2}\n")  # fmt: skip
    assert str(err.value).endswith(
        ":7:35: error: layer '1' (linear) with input [2, 8]: expected input [2, 30] (in_features=30), got [2, 8]"
    )


def test_shared_module_is_one_module_and_gradients_add_up(write_spec):
    path = "configs/chapter/shared_layer.yaml"
    model = netcfg.build(path, device="cpu")
    assert model[2] is model[4] is model[6]
    x = torch.rand(2, 20)
    model(x).sum().backward()
    # Reference: the same computation with three separate copies, then summed gradients.
    copies = [nn.Linear(8, 8) for _ in range(3)]
    for c in copies:
        c.load_state_dict(model[2].state_dict())
    h = torch.relu(model[0](x))
    for c in copies:
        h = torch.relu(c(h))
    model[8](h).sum().backward()
    expected = sum(c.weight.grad for c in copies)
    torch.testing.assert_close(model[2].weight.grad, expected)


def test_tied_parameters_are_one_tensor_and_survive_moves():
    model = netcfg.build("configs/chapter/tied_params.yaml", device="cpu")
    assert model.embed.weight is model.head.weight
    assert sum(p.numel() for p in model.parameters()) == 100 * 16 + 2 * 16
    model.to(torch.float64)
    assert model.embed.weight is model.head.weight and model.head.weight.dtype == torch.float64
    model.to("cpu")
    assert model.embed.weight is model.head.weight
    assert list(model.state_dict()) == ["embed.weight", "norm.weight", "norm.bias", "head.weight"]


def test_tie_shape_mismatch_names_both_paths_and_shapes(write_spec):
    with pytest.raises(BuildError) as err:
        make(write_spec, "model: {type: sequential, layers: [{type: linear, out_features: 8}, "
                         "{type: linear, out_features: 4}]}\nties:\n  - [0.weight, 1.weight]\n")  # fmt: skip
    assert str(err.value).endswith(
        ":5:16: error: cannot tie '1.weight' [4, 8] float32 to '0.weight' [8, 20] float32: shapes or dtypes differ"
    )


def test_tie_to_a_missing_path_suggests_one(write_spec):
    with pytest.raises(BuildError, match=r"tie: no parameter '0.wieght' in the model; did you mean '0.weight'\?"):
        make(write_spec, "model: {type: sequential, layers: [{type: linear, out_features: 20}, "
                         "{type: linear, out_features: 20}]}\nties:\n  - [0.wieght, 1.weight]\n")  # fmt: skip


def test_frozen_module(write_spec):
    model = make(write_spec, "model: {type: sequential, layers: [{type: linear, out_features: 4, trainable: false},"
                             " {type: linear, out_features: 2}]}").model  # fmt: skip
    assert [p.requires_grad for p in model.parameters()] == [False, False, True, True]


def test_dtype_and_bfloat16(write_spec):
    built = make(write_spec, "dtype: bfloat16\nmodel: {type: linear, out_features: 4}")
    assert built.model.weight.dtype == torch.bfloat16


def test_graph_reads_named_earlier_outputs(write_spec):
    body = """\
model:
  type: graph
  nodes:
    a: {type: linear, out_features: 20}
    b: {type: relu}
    c: {type: linear, out_features: 20, inputs: input}
    s: {type: add, inputs: [b, c]}
    cat: {type: concat, inputs: [s, input]}
"""
    model = make(write_spec, body).model
    x = torch.rand(2, 20)
    expected = torch.cat([torch.relu(model.a(x)) + model.c(x), x], dim=-1)
    torch.testing.assert_close(model(x), expected)


def test_forward_hooks_fire_on_graph_add_and_mul_nodes(write_spec):
    body = """\
model:
  type: graph
  nodes:
    a: {type: relu}
    s: {type: add, inputs: [a, input]}
    m: {type: mul, inputs: [s, input]}
"""
    model = make(write_spec, body).model
    x = torch.rand(2, 20)
    seen = []
    model.s.register_forward_hook(lambda mod, inputs, out: seen.append(("s", out.clone())))
    model.m.register_forward_pre_hook(lambda mod, inputs: seen.append(("m", None)))
    torch.testing.assert_close(model(x), (torch.relu(x) + x) * x)
    assert [name for name, _ in seen] == ["s", "m"]
    torch.testing.assert_close(seen[0][1], torch.relu(x) + x)
    seen.clear()
    handle = nn.modules.module.register_module_forward_hook(
        lambda mod, inputs, out: seen.append((type(mod).__name__, None))
    )
    try:
        model(x)
    finally:
        handle.remove()
    assert [name for name, _ in seen if name in ("Add", "Mul")] == ["Add", "Mul"]


def test_repeat_with_merge_runs_the_copies_side_by_side(write_spec):
    body = 'model: {type: repeat, times: 3, merge: add, body: {type: linear, out_features: "${4 + index}"}}\n'
    with pytest.raises(BuildError, match=r"branch outputs: cannot add inputs of shapes \[2, 4\], \[2, 5\], \[2, 6\]"):
        make(write_spec, body)
    body = "model: {type: repeat, times: 3, merge: stack, dim: 1, body: {type: linear, out_features: 5}}\n"
    model = make(write_spec, body).model
    x = torch.rand(2, 20)
    expected = torch.stack([model.get_submodule(str(i))(x) for i in range(3)], dim=1)
    torch.testing.assert_close(model(x), expected)
    assert len({id(model.get_submodule(str(i)).weight) for i in range(3)}) == 3  # independent copies


def test_graph_refuses_later_and_unknown_inputs(write_spec):
    body = "model:\n  type: graph\n  nodes:\n    a: {type: relu, inputs: b}\n    b: {type: relu}\n"
    with pytest.raises(BuildError, match="input 'b' is a later node"):
        make(write_spec, body)
    with pytest.raises(BuildError, match="unknown input 'inptu'; did you mean 'input'"):
        make(write_spec, body.replace("inputs: b", "inputs: inptu"))


def test_parallel_concat_and_residual(write_spec):
    body = """\
model:
  type: sequential
  layers:
    - {type: parallel, branches: [{type: linear, out_features: 3}, {type: linear, out_features: 5}]}
    - {type: residual, body: {type: linear, out_features: 8}}
"""
    model = make(write_spec, body).model
    x = torch.rand(2, 20)
    p = torch.cat([model[0].get_submodule("0")(x), model[0].get_submodule("1")(x)], dim=-1)
    torch.testing.assert_close(model(x), p + model[1].body(p))


def test_merge_shape_errors_name_the_shapes(write_spec):
    with pytest.raises(BuildError, match=r"cannot add inputs of shapes \[2, 3\], \[2, 5\]"):
        make(write_spec, "model: {type: parallel, merge: add, branches: [{type: linear, out_features: 3}, "
                         "{type: linear, out_features: 5}]}")  # fmt: skip


def test_custom_layers_follow_their_formulas(write_spec):
    x = torch.rand(2, 20)
    centered = make(write_spec, "model: {type: centered}").model
    torch.testing.assert_close(centered(x), x - x.mean())
    dense = make(write_spec, "model: {type: dense_relu, units: 3}").model
    torch.testing.assert_close(dense(x), torch.relu(x @ dense.weight + dense.bias))
    reduction = make(write_spec, "model: {type: tensor_reduction, out_features: 3}").model
    w = reduction.weight
    expected = torch.stack(
        [sum(w[i, j, :] * x[n, i] * x[n, j] for i in range(20) for j in range(20)) for n in range(2)]
    )
    torch.testing.assert_close(reduction(x), expected, rtol=1e-4, atol=1e-4)
    fourier = make(write_spec, "model: {type: fourier}").model
    torch.testing.assert_close(fourier(x), torch.fft.fft(x)[..., :10])


def test_constant_weight_is_a_buffer_not_a_parameter():
    model = netcfg.build("configs/chapter/fixed_hidden.yaml", device="cpu")
    assert "rand_weight.weight" in model.state_dict()
    assert "rand_weight.weight" not in dict(model.named_parameters())
    w = model.rand_weight.weight
    assert not w.requires_grad and float(w.min()) >= 0 and float(w.max()) < 1


def test_attention_with_grouped_heads_and_rotary_matches_a_reference(write_spec):
    head = "netcfg: 1\ninput: {shape: [2, 5, 16]}\n"
    attn = make(write_spec, "model: {type: attention, heads: 4, kv_heads: 2, causal: true, rotary: true}", head).model
    x = torch.rand(2, 5, 16)
    q, k, v = attn.qkv(x).split([16, 8, 8], dim=-1)
    q = q.view(2, 5, 4, 4).transpose(1, 2)
    k = k.view(2, 5, 2, 4).transpose(1, 2).repeat_interleave(2, dim=1)
    v = v.view(2, 5, 2, 4).transpose(1, 2).repeat_interleave(2, dim=1)
    pos = torch.arange(5.0)[:, None] / 10000 ** (torch.arange(0, 4, 2) / 4)
    cos, sin = torch.cat([pos.cos()] * 2, -1), torch.cat([pos.sin()] * 2, -1)

    def rot(t):
        return t * cos + torch.cat([-t[..., 2:], t[..., :2]], -1) * sin

    q, k = rot(q), rot(k)
    scores = (q @ k.transpose(-1, -2)) / 2.0
    scores = scores.masked_fill(torch.triu(torch.ones(5, 5, dtype=torch.bool), 1), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 5, 16)
    torch.testing.assert_close(attn(x), attn.proj(y))


def test_attention_heads_must_divide_the_width(write_spec):
    head = "netcfg: 1\ninput: {shape: [2, 5, 10]}\n"
    with pytest.raises(BuildError, match="input dim 10 is not divisible by heads=4"):
        make(write_spec, "model: {type: attention, heads: 4}", head)


def test_sample_input_is_seeded_and_respects_the_token_range(write_spec):
    spec = load_spec(write_spec("netcfg: 1\ninput: {shape: [3, 50], dtype: int64, high: 7}\nmodel: {type: identity}"))
    x = sample_input(spec)
    assert x.dtype == torch.int64 and int(x.min()) >= 0 and int(x.max()) < 7
    assert torch.equal(x, sample_input(spec))


def test_a_child_swapped_after_building_is_the_one_that_runs(write_spec):
    body = """\
model:
  type: graph
  nodes:
    fc: {type: linear, out_features: 20}
    act: {type: relu}
    add: {type: add, inputs: [input, act]}
    par: {type: parallel, branches: [{type: linear, out_features: 3}, {type: identity}], merge: concat}
"""
    model = make(write_spec, body).model
    x = torch.rand(2, 20)
    before = model(x)
    model.fc = nn.Identity()
    model.par.get_submodule("1").register_forward_hook(lambda m, i, o: o * 0)
    h = x + torch.relu(x)
    expected = torch.cat([model.par.get_submodule("0")(h), h * 0], dim=-1)
    torch.testing.assert_close(model(x), expected)
    assert not torch.equal(before, model(x))


def test_a_model_larger_than_free_memory_is_refused_before_allocation(write_spec):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(BuildError) as err:
        make(
            write_spec, "model: {type: linear, out_features: 1000000}", head="netcfg: 1\ninput: {shape: [1, 1000000]}\n"
        )
    message = err.value.diagnostics[0].message
    assert message.startswith(
        "not enough memory on cpu: the layers up to 'model' (linear) need 4,000,004,000,000 bytes"
    )
    assert "--no-memory-check" in message
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 300 * 1024  # KiB: nothing was allocated


def test_a_model_of_many_layers_too_large_is_refused_having_allocated_little(write_spec, monkeypatch):
    # Thirty 1000x1000 linear layers (4,004,000 bytes each) against 80 MB free: the whole model is
    # counted on meta once 5 MB are counted, and refused at the layer that passes 80 MB.
    from netcfg.building import builder, memory

    monkeypatch.setattr(memory, "available", lambda device: 80_000_000)
    monkeypatch.setattr(builder, "LOOK_AHEAD_BYTES", 5_000_000)
    body = "model: {type: repeat, times: 30, body: {type: linear, out_features: 1000}}"
    with pytest.raises(BuildError) as err:
        make(write_spec, body, head="netcfg: 1\ninput: {shape: [1, 1000]}\n")
    assert err.value.diagnostics[0].message.startswith(
        "not enough memory on cpu: the layers up to '19' (linear) need 80,080,000 bytes, 80,000,000 are available"
    )
    assert err.value.partial.allocated == 2 * 4_004_000  # the real build stopped before its second layer
    # Under the budget, the look-ahead leaves the weights as they would be without it.
    monkeypatch.setattr(memory, "available", lambda device: 10**12)
    looked_ahead = make(write_spec, body, head="netcfg: 1\ninput: {shape: [1, 1000]}\n", seed=3).model
    monkeypatch.setattr(builder, "LOOK_AHEAD_BYTES", 10**12)
    plain = make(write_spec, body, head="netcfg: 1\ninput: {shape: [1, 1000]}\n", seed=3).model
    for a, b in zip(looked_ahead.parameters(), plain.parameters(), strict=True):
        assert torch.equal(a, b)


def test_reading_a_node_removed_by_its_if_says_so(write_spec):
    body = "model:\n  type: graph\n  nodes:\n    a: {if: false, type: relu}\n    b: {type: relu, inputs: [a]}\n"
    with pytest.raises(BuildError) as err:
        make(write_spec, body)
    assert str(err.value).endswith(":7:30: error: input 'a' was removed by its `if` (line 6); read another node")


def test_ties_sharing_a_path_and_ties_across_frozen_layers_are_refused(write_spec):
    layers = (
        "model: {type: sequential, layers: [{name: a, type: linear, out_features: 20}, "
        "{name: b, type: linear, out_features: 20}, {name: c, type: linear, out_features: 20}]}\n"
    )
    chained = layers + "ties: [[a.weight, b.weight], [b.weight, c.weight]]\n"
    with pytest.raises(BuildError, match=r"tie: 'b.weight' is already in tie 0; list all the paths of one tensor"):
        make(write_spec, chained)
    frozen = layers.replace("{name: a, type: linear", "{name: a, trainable: false, type: linear")
    with pytest.raises(BuildError, match=r"'a.weight' is frozen \(trainable: false\), 'b.weight' is not"):
        make(write_spec, frozen + "ties: [[b.weight, a.weight]]\n")


def test_a_path_tied_to_itself_is_refused(write_spec):
    with pytest.raises(BuildError, match="tie: 'weight' is listed twice in one tie"):
        make(write_spec, "model: {type: linear, out_features: 4}\nties: [[weight, weight]]\n")


@pytest.mark.parametrize(
    "body, head, message",
    [
        ("model: {type: softmax, dim: 5}", HEAD, "softmax over dim 5 of a 2-dimensional input"),
        ("model: {type: linear, out_features: 2}", "netcfg: 1\ninput: {shape: [2, 4], dtype: int64, high: 5}\n",
         "linear needs a floating-point input, its input is int64 (token ids go through an embedding)"),
        ("model: {type: shared, ref: x}\nshared: {x: {type: shared, ref: x}}", HEAD, "shared module 'x' uses itself"),
    ],
)  # fmt: skip
def test_problems_found_at_build_time_not_at_run_time(write_spec, body, head, message):
    with pytest.raises(BuildError) as err:
        make(write_spec, body, head)
    assert err.value.diagnostics[0].message.endswith(message)
