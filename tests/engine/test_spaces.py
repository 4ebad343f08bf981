"""Contract tests run over every registered search space, then space-specific checks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from search_engine import SPACES, ConfigError, count_params, create_space, make_task

torch.set_num_threads(1)

SPACE_NAMES = SPACES.names()
SAMPLES_PER_SPACE = 10
NB201_KNOWN = (
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"
)


def fake_image_task(channels: int = 1, side: int = 8, num_classes: int = 3):
    rng = np.random.default_rng(0)
    X = rng.random((30, channels, side, side))
    y = np.arange(30) % num_classes
    return make_task(f"fake-image-{side}", X, y)


def fake_tabular_task(features: int = 12, num_classes: int = 3):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, features))
    y = np.arange(30) % num_classes
    return make_task("fake-tabular", X, y)


def samples(space, seed: int = 0, n: int = SAMPLES_PER_SPACE):
    rng = np.random.default_rng(seed)
    return [space.sample(rng) for _ in range(n)]


def forward(model, task, batch: int = 4):
    model.eval()
    with torch.no_grad():
        return model(task.X_train[:batch])


@pytest.fixture(scope="module")
def image_task():
    return fake_image_task()


@pytest.fixture(scope="module")
def tabular_task():
    return fake_tabular_task()


# -- contract: every registered space --------------------------------------------------------


def test_it_registers_the_three_builtin_spaces():
    assert {"mlp", "nb201", "mobilenet"} <= set(SPACE_NAMES)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_has_a_one_line_help_text(name):
    assert SPACES.describe()[name]["help"]


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_samples_the_same_architectures_for_the_same_seed(name):
    space = create_space(name)
    assert samples(space, seed=7) == samples(space, seed=7)
    assert samples(space, seed=7) != samples(space, seed=8)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_samples_valid_canonical_json_architectures(name):
    space = create_space(name)
    for arch in samples(space):
        assert space.validate(arch) == arch
        assert space.canonical(arch) == arch
        assert json.loads(json.dumps(arch)) == arch


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_builds_networks_with_one_logit_per_class(name, image_task, tabular_task):
    space = create_space(name)
    for arch in samples(space):
        logits = forward(space.build(arch, image_task), image_task)
        assert logits.shape == (4, image_task.num_classes)
        assert torch.isfinite(logits).all()
        try:
            model = space.build(arch, tabular_task)
        except ConfigError as err:
            assert err.field == "space" and "image" in err.reason
            continue
        assert forward(model, tabular_task).shape == (4, tabular_task.num_classes)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_trains_a_step_in_train_mode(name, image_task):
    space = create_space(name)
    model = space.build(samples(space, n=1)[0], image_task)
    model.train()
    loss = torch.nn.functional.cross_entropy(model(image_task.X_train[:8]), image_task.y_train[:8])
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_rejects_architectures_with_unknown_missing_or_bad_choices(name, image_task):
    space = create_space(name)
    arch = samples(space, n=1)[0]
    label = next(iter(arch))
    for bad in (
        {**arch, "not_a_choice": 1},
        {k: v for k, v in arch.items() if k != label},
        {**arch, label: "bogus"},
    ):
        with pytest.raises(ConfigError) as excinfo:
            space.build(bad, image_task)
        assert excinfo.value.field == "architecture"


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_mutates_exactly_one_active_choice(name):
    space = create_space(name)
    rng = np.random.default_rng(1)
    for parent in samples(space):
        child = space.mutate(parent, rng)
        assert space.validate(child) == child == space.canonical(child)
        assert space.fingerprint(child) != space.fingerprint(parent)
        shared = set(space.active(parent)) & set(space.active(child))
        assert len([k for k in shared if parent[k] != child[k]]) == 1


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_mutates_the_same_way_for_the_same_seed(name):
    space = create_space(name)
    parent = samples(space, n=1)[0]
    children = [space.mutate(parent, np.random.default_rng(3)) for _ in range(2)]
    assert children[0] == children[1]


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_lists_distinct_valid_neighbors(name):
    space = create_space(name)
    for arch in samples(space, n=3):
        neighbors = space.neighbors(arch)
        assert neighbors
        prints = [space.fingerprint(n) for n in neighbors]
        assert len(set(prints)) == len(prints)
        assert space.fingerprint(arch) not in prints
        for neighbor in neighbors:
            assert space.validate(neighbor) == neighbor
        assert space.neighbors(arch) == neighbors


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_encodes_to_a_fixed_length_one_hot_vector(name):
    space = create_space(name)
    vectors = [space.encode(arch) for arch in samples(space)]
    assert len({v.shape for v in vectors}) == 1
    assert vectors[0].ndim == 1 and vectors[0].dtype == np.float32
    for arch, vector in zip(samples(space), vectors):
        assert set(np.unique(vector)) <= {0.0, 1.0}
        assert vector.sum() == len(space.active(arch))


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_fingerprints_equal_canonical_architectures_equally(name):
    space = create_space(name)
    for arch in samples(space):
        assert space.fingerprint(arch) == space.fingerprint(dict(arch))
        reordered = dict(reversed(list(arch.items())))
        assert space.fingerprint(reordered) == space.fingerprint(arch)
        assert space.fingerprint(json.loads(json.dumps(arch))) == space.fingerprint(arch)
    assert space.fingerprint(samples(space, n=1)[0]) == create_space(name).fingerprint(samples(space, n=1)[0])


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_describes_architectures_briefly(name):
    space = create_space(name)
    for arch in samples(space, n=3):
        text = space.describe(arch)
        assert isinstance(text, str) and text and "\n" not in text


@pytest.mark.parametrize("name", SPACE_NAMES)
def test_it_rejects_unknown_options(name):
    with pytest.raises(ConfigError) as excinfo:
        create_space(name, no_such_option=1)
    assert excinfo.value.field == "no_such_option"


# -- closed-form cardinalities agree with enumeration -------------------------------------------


@pytest.mark.parametrize(
    "name, config",
    [
        ("mlp", {"max_depth": 1}),
        ("mlp", {"max_depth": 2}),
        ("mobilenet", {"stages": 1}),
        ("mobilenet", {"stages": 2}),
    ],
)
def test_it_counts_the_same_architectures_as_enumeration(name, config):
    space = create_space(name, **config)
    assert space.cardinality() == sum(1 for _ in space.enumerate())


def test_it_counts_mlp_and_mobilenet_defaults_in_closed_form():
    assert create_space("mlp").cardinality() == 64 * (5 + 25 + 125 + 625)
    assert create_space("mobilenet").cardinality() == 27**3


# -- mlp ---------------------------------------------------------------------------------------


def test_it_makes_mlp_widths_beyond_depth_inactive():
    space = create_space("mlp")
    arch = {
        **samples(space, n=1)[0],
        "depth": 2,
        "width_1": 64,
        "width_2": 128,
        "width_3": 512,
        "width_4": 256,
    }
    assert space.active(arch)[:3] == ["depth", "width_1", "width_2"]
    assert "width_3" not in space.active(arch)
    canon = space.canonical(arch)
    assert canon["width_3"] == canon["width_4"] == 32
    assert space.fingerprint(arch) == space.fingerprint(canon)


def test_it_builds_mlp_hidden_layers_of_the_chosen_widths(tabular_task):
    space = create_space("mlp")
    arch = {"depth": 3, "width_1": 64, "width_2": 64, "width_3": 256, "width_4": 32, "activation": "gelu",
            "dropout": 0.2, "batch_norm": True, "residual": True}  # fmt: skip
    model = space.build(arch, tabular_task)
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    # body + projection (12 -> 64), body only (64 -> 64, identity skip), body + projection (64 -> 256), head.
    assert [(m.in_features, m.out_features) for m in linears] == [
        (12, 64), (12, 64), (64, 64), (64, 256), (64, 256), (256, 3)
    ]  # fmt: skip
    assert any(isinstance(m, torch.nn.GELU) for m in model.modules())
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())
    assert space.describe(arch) == "64-64-256 gelu dropout=0.2 bn residual"


def test_it_flattens_images_for_the_mlp():
    task = fake_image_task(channels=1, side=8)
    space = create_space("mlp")
    model = space.build(samples(space, n=1)[0], task)
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert first.in_features == 64
    assert forward(model, task).shape == (4, 3)


def test_it_limits_mlp_depth_with_max_depth():
    space = create_space("mlp", max_depth=2)
    assert space.choices()["depth"] == [1, 2]
    assert "width_3" not in space.choices()
    with pytest.raises(ConfigError) as excinfo:
        create_space("mlp", max_depth=0)
    assert excinfo.value.field == "max_depth"


# -- nb201 -------------------------------------------------------------------------------------


def test_it_has_exactly_the_nas_bench_201_cardinality():
    space = create_space("nb201")
    assert space.cardinality() == 15625 == 5**6
    assert sum(1 for _ in space.enumerate()) == 15625


def test_it_labels_nb201_edges_in_benchmark_order():
    space = create_space("nb201")
    assert list(space.choices()) == ["1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"]
    assert space.choices()["1<-0"] == ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"]


def test_it_parses_a_known_nas_bench_201_string():
    space = create_space("nb201")
    arch = space.from_string(NB201_KNOWN)
    assert arch == {
        "1<-0": "nor_conv_3x3",
        "2<-0": "nor_conv_3x3",
        "2<-1": "nor_conv_3x3",
        "3<-0": "skip_connect",
        "3<-1": "nor_conv_3x3",
        "3<-2": "nor_conv_3x3",
    }
    assert space.to_string(arch) == NB201_KNOWN
    assert space.describe(arch) == NB201_KNOWN


def test_it_round_trips_nb201_strings():
    space = create_space("nb201")
    for arch in samples(space, n=200):
        text = space.to_string(arch)
        assert space.from_string(text) == arch
        assert space.to_string(space.from_string(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|",  # two nodes
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|+|none~0|",
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # missing edge
        "|conv_5x5~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # bad op
        "|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # bad input
        "|nor_conv_3x3|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # no ~
        "nor_conv_3x3~0+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # no bars
        "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",  # order
    ],
)
def test_it_rejects_malformed_nb201_strings(text):
    with pytest.raises(ConfigError) as excinfo:
        create_space("nb201").from_string(text)
    assert excinfo.value.field == "architecture"


@pytest.mark.parametrize("channels, side", [(1, 8), (1, 28), (3, 32), (1, 7), (1, 1)])
def test_it_runs_nb201_on_small_and_odd_image_sizes(channels, side):
    task = fake_image_task(channels=channels, side=side)
    space = create_space("nb201")
    model = space.build(space.from_string(NB201_KNOWN), task)
    assert forward(model, task).shape == (4, 3)


def test_it_runs_an_all_none_nb201_cell():
    task = fake_image_task()
    space = create_space("nb201")
    arch = {label: "none" for label in space.choices()}
    logits = forward(space.build(arch, task), task)
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()


def test_it_stacks_n_cells_per_stage_with_c_channels():
    task = fake_image_task()
    arch = create_space("nb201").from_string(NB201_KNOWN)
    small = create_space("nb201", C=8, N=1).build(arch, task)
    deeper = create_space("nb201", C=8, N=2).build(arch, task)
    wider = create_space("nb201", C=16, N=1).build(arch, task)
    assert count_params(small) < count_params(deeper)
    assert count_params(small) < count_params(wider)
    assert small.classifier.in_features == 8 * 4


def test_it_rejects_tabular_tasks_for_nb201(tabular_task):
    space = create_space("nb201")
    with pytest.raises(ConfigError) as excinfo:
        space.build(space.from_string(NB201_KNOWN), tabular_task)
    assert excinfo.value.field == "space"
    assert "image" in excinfo.value.reason and "tabular" in excinfo.value.reason


# -- mobilenet ---------------------------------------------------------------------------------


def test_it_declares_depth_kernel_and_expansion_per_stage():
    space = create_space("mobilenet", stages=2)
    assert space.choices() == {
        "stage1_depth": [1, 2, 3], "stage1_kernel": [3, 5, 7], "stage1_expand": [1, 3, 6],
        "stage2_depth": [1, 2, 3], "stage2_kernel": [3, 5, 7], "stage2_expand": [1, 3, 6],
    }  # fmt: skip


@pytest.mark.parametrize("side, stages", [(8, 3), (8, 6), (28, 3), (1, 4)])
def test_it_never_shrinks_mobilenet_feature_maps_below_one_pixel(side, stages):
    task = fake_image_task(side=side)
    space = create_space("mobilenet", stages=stages)
    arch = {label: values[-1] for label, values in space.choices().items()}
    model = space.build(arch, task)
    assert forward(model, task).shape == (4, 3)


def test_it_uses_residuals_only_where_shapes_match():
    from search_engine.spaces.mobilenet import InvertedResidual

    task = fake_image_task()
    space = create_space("mobilenet")
    arch = {label: values[1] for label, values in space.choices().items()}  # depth 2 per stage
    blocks = [m for m in space.build(arch, task).modules() if isinstance(m, InvertedResidual)]
    # Stage 1's first block maps 16 -> 16 at stride 1; each later stage's first block changes shape.
    assert [b.use_residual for b in blocks] == [True, True, False, True, False, True]


def test_it_accepts_configured_stage_widths():
    task = fake_image_task()
    space = create_space("mobilenet", stages=2, stage_widths="24,40")
    arch = samples(space, n=1)[0]
    assert space.build(arch, task)[-1].in_features == 40
    with pytest.raises(ConfigError) as excinfo:
        create_space("mobilenet", stages=3, stage_widths=[8, 16])
    assert excinfo.value.field == "stage_widths"
    with pytest.raises(ConfigError) as excinfo:
        create_space("mobilenet", stage_widths="a,b,c")
    assert excinfo.value.field == "stage_widths"


def test_it_describes_mobilenet_stages_compactly():
    space = create_space("mobilenet", stages=2)
    arch = {"stage1_depth": 2, "stage1_kernel": 5, "stage1_expand": 6,
            "stage2_depth": 1, "stage2_kernel": 3, "stage2_expand": 1}  # fmt: skip
    assert space.describe(arch) == "s1:d2k5e6 s2:d1k3e1"


def test_it_rejects_tabular_tasks_for_mobilenet(tabular_task):
    space = create_space("mobilenet")
    with pytest.raises(ConfigError) as excinfo:
        space.build(samples(space, n=1)[0], tabular_task)
    assert excinfo.value.field == "space"
