"""Architecture drawings (search_engine/spaces/drawing.py): the right parts with the right labels,
escaped, deterministic, self-contained SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from search_engine.registry import create_space
from search_engine.spaces.drawing import changed_choices, choice_list, draw_architecture

SVG = "{http://www.w3.org/2000/svg}"
CELL = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|"


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def groups(root: ET.Element, kind: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if kind in g.get("class", "").split()]


def test_it_draws_exactly_the_non_none_edges_of_an_nb201_cell():
    space = create_space("nb201")
    root = parse(draw_architecture(space, space.from_string(CELL)))
    edges = {g.get("data-edge"): g.get("data-op") for g in groups(root, "edge")}
    assert edges == {"1<-0": "nor_conv_3x3", "2<-1": "skip_connect", "3<-0": "avg_pool_3x3", "3<-2": "nor_conv_1x1"}
    for g in groups(root, "edge"):
        assert [t.text for t in g.iter(f"{SVG}text")] == [g.get("data-op")]
    assert len(groups(root, "node")) == 4
    assert root.get("data-space") == "nb201"


def test_it_draws_all_six_edges_when_none_is_none():
    space = create_space("nb201")
    arch = {label: "nor_conv_3x3" for label in space.choices()}
    assert len(groups(parse(draw_architecture(space, arch)), "edge")) == 6


def test_it_highlights_only_the_changed_edges():
    space = create_space("nb201")
    a = space.from_string(CELL)
    b = {**a, "2<-1": "nor_conv_1x1", "3<-2": "skip_connect"}
    changed = changed_choices(space, a, b)
    assert changed == ["2<-1", "3<-2"]
    root = parse(draw_architecture(space, b, changed))
    assert sorted(g.get("data-edge") for g in groups(root, "changed")) == ["2<-1", "3<-2"]


def test_it_draws_mobilenet_blocks_with_kernel_and_expansion():
    space = create_space("mobilenet", stages=3)
    arch = {"stage1_depth": 1, "stage1_kernel": 3, "stage1_expand": 1, "stage2_depth": 2, "stage2_kernel": 5,
            "stage2_expand": 6, "stage3_depth": 3, "stage3_kernel": 7, "stage3_expand": 3}  # fmt: skip
    root = parse(draw_architecture(space, arch, ["stage2_kernel"]))
    blocks = groups(root, "block")
    assert [(b.get("data-stage"), b.get("data-block")) for b in blocks] == [
        ("1", "1"), ("2", "1"), ("2", "2"), ("3", "1"), ("3", "2"), ("3", "3")
    ]  # fmt: skip
    texts = [t.text for b in blocks for t in b.iter(f"{SVG}text")]
    assert "k5 · e6" in texts and "k7 · e3" in texts and "k3 · e1" in texts
    assert [b.get("data-stage") for b in groups(root, "changed")] == ["2", "2"]
    heads = " ".join(t.text for g in groups(root, "stage-head") for t in g.iter(f"{SVG}text"))
    assert "16 ch" in heads and "64 ch" in heads


def test_it_draws_the_mlp_layer_stack():
    space = create_space("mlp", max_depth=4)
    arch = {"depth": 3, "width_1": 256, "width_2": 64, "width_3": 32, "width_4": 32, "activation": "gelu",
            "dropout": 0.1, "batch_norm": True, "residual": True}  # fmt: skip
    root = parse(draw_architecture(space, arch))
    layers = groups(root, "layer")
    assert [g.get("data-layer") for g in layers] == ["1", "2", "3"]
    assert [next(g.iter(f"{SVG}text")).text for g in layers] == ["Linear 256", "Linear 64", "Linear 32"]
    assert "gelu · batch norm · dropout 0.1" in [t.text for t in layers[0].iter(f"{SVG}text")]
    assert all(len(list(g.iter(f"{SVG}path"))) == 1 for g in layers)  # the skip connection


def test_a_width_beyond_both_depths_is_no_change():
    space = create_space("mlp", max_depth=3)
    a = {"depth": 1, "width_1": 32, "width_2": 32, "width_3": 64, "activation": "relu", "dropout": 0.0,
         "batch_norm": False, "residual": False}  # fmt: skip
    assert changed_choices(space, a, {**a, "width_3": 512}) == []
    assert changed_choices(space, a, {**a, "depth": 2, "width_2": 64}) == ["depth", "width_2"]


@pytest.mark.parametrize("name", ["nb201", "mobilenet", "mlp"])
def test_drawings_are_deterministic_and_self_contained(name):
    space = create_space(name)
    arch = space.sample(np.random.default_rng(7))
    svg = draw_architecture(space, arch)
    assert svg == draw_architecture(space, dict(arch))
    root = parse(svg)  # well-formed XML
    assert root.tag == f"{SVG}svg" and root.get("viewBox").startswith("0 0 420 ")
    assert "http" not in svg.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "@import" not in svg and "<image" not in svg and "href" not in svg.replace("url(#", "")


def test_text_is_escaped():
    svg = choice_list({"<script>": "a&b", "x": '"q"'}, space="custom")
    root = parse(svg)
    assert "<script>" not in svg
    assert [t.text for t in root.iter(f"{SVG}text")] == ["<script>", "a&b", "x", '"q"']
