"""Architecture drawings as SVG text, for the trial page, the trial diff, the compare page and the
model card.

Pure string building: no fonts, images or stylesheets from anywhere (the system's sans-serif
font), every text escaped, the same architecture always gives the same bytes. Each drawing is
about 420 units wide, so it reads at ~400 px. Drawn parts carry `data-choices` (the choice
labels they show) and the class `changed` when one of those labels is in `highlight`, so a diff
of two architectures can colour exactly what differs.

Spaces call the drawing for their shape from their `draw(arch, highlight)` method;
`draw_architecture(space, arch)` uses it, or lists the choices for a space without one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from xml.sax.saxutils import escape, quoteattr

WIDTH = 420
FONT = "system-ui, -apple-system, 'Segoe UI', sans-serif"
CHANGED = "#ea580c"
INK = "#1d2530"
MUTED = "#64748b"
OP_COLORS = {
    "skip_connect": "#64748b",
    "nor_conv_1x1": "#2563eb",
    "nor_conv_3x3": "#7c3aed",
    "avg_pool_3x3": "#16a34a",
}
STYLE = (
    # Scoped to the drawing: the SVG is inlined into pages that hold Plotly's SVG charts too. CSS
    # beats presentation attributes, so only what a change recolours is set here.
    f"<style>.arch-drawing text{{font-family:{FONT}}}"
    f".arch-drawing .changed .stroke{{stroke:{CHANGED};stroke-width:4}}"
    f".arch-drawing .changed rect{{stroke:{CHANGED};stroke-width:3;fill:#fff7ed}}"
    f".arch-drawing .changed text.op{{fill:{CHANGED};font-weight:700}}</style>"
)


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _attrs(**attrs) -> str:
    """Attributes in the given order; `class_` -> class, `data_x` -> data-x; None is left out."""
    parts = []
    for key, value in attrs.items():
        if value is None:
            continue
        name = "class" if key == "class_" else key.replace("_", "-")
        shown = _num(value) if isinstance(value, float) else str(value)
        parts.append(f"{name}={quoteattr(shown)}")
    return " ".join(parts)


def _text(x: float, y: float, content, **attrs) -> str:
    return f"<text {_attrs(x=float(x), y=float(y), **attrs)}>{escape(str(content))}</text>"


def _group(labels: Iterable[str], highlight: frozenset, body: str, kind: str, **attrs) -> str:
    labels = list(labels)
    changed = any(label in highlight for label in labels)
    cls = f"{kind} changed" if changed else kind
    return f"<g {_attrs(class_=cls, data_choices=' '.join(labels), **attrs)}>{body}</g>"


def _svg(height: float, title: str, body: str, space: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" {_attrs(viewBox=f"0 0 {WIDTH} {_num(height)}", width=WIDTH)} '
        f"{_attrs(height=float(height), fill=INK, role='img', class_='arch-drawing', data_space=space, aria_label=title)}>"
        f"<title>{escape(title)}</title>{STYLE}{body}</svg>"
    )


def _box(x: float, y: float, w: float, h: float, fill: str = "#ffffff", stroke: str = "#94a3b8") -> str:
    return (f"<rect {_attrs(x=float(x), y=float(y), width=float(w), height=float(h), rx=6, fill=fill, stroke=stroke)} "
            'stroke-width="1.5"/>')  # fmt: skip


# NAS-Bench-201 cell ------------------------------------------------------------------------------
NB201_NODE_X = (40.0, 153.0, 266.0, 380.0)
NB201_Y = 150.0
NODE_R = 17.0
# How far each edge bends (above < 0 < below) so that no two edges or labels overlap: the three
# one-step edges run straight between the nodes' sides, 0->2 and 0->3 arc above (from the nodes'
# tops), 1->3 below (from their bottoms).
NB201_BEND = {(1, 0): 0.0, (2, 1): 0.0, (3, 2): 0.0, (2, 0): -60.0, (3, 0): -112.0, (3, 1): 62.0}


def _nb201_edges(arch: Mapping) -> list[tuple[int, int, str, str]]:
    """(target, source, label, op) for the cell's edges in the benchmark's order, `none` left out."""
    edges = []
    for label, op in arch.items():
        target, sep, source = str(label).partition("<-")
        if not sep or not (target.isdigit() and source.isdigit()) or op == "none":
            continue
        edges.append((int(target), int(source), str(label), str(op)))
    return sorted(edges)


def nb201_cell(arch: Mapping, highlight: Iterable[str] = ()) -> str:
    """The cell as a DAG: nodes 0 (input) to 3 (output) left to right, one labelled arrow per edge
    whose op is not `none` (a `none` edge carries nothing, so it is not drawn)."""
    highlight = frozenset(highlight)
    parts = ['<defs><marker id="nb201-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
             f'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="{MUTED}"/></marker></defs>']  # fmt: skip
    for target, source, label, op in _nb201_edges(arch):
        bend = NB201_BEND.get((target, source), 0.0)
        if bend:
            x0, x1 = NB201_NODE_X[source], NB201_NODE_X[target]
            y = NB201_Y + (NODE_R if bend > 0 else -NODE_R)
        else:
            x0, x1, y = NB201_NODE_X[source] + NODE_R, NB201_NODE_X[target] - NODE_R - 2, NB201_Y
        color = OP_COLORS.get(op, INK)
        mid_x = (x0 + x1) / 2
        path = f"M{_num(x0)} {_num(y)} Q{_num(mid_x)} {_num(y + 2 * bend)} {_num(x1)} {_num(y)}"
        label_y = y + bend + (-6 if bend <= 0 else 15)
        body = (
            f'<path {_attrs(class_="stroke", d=path, fill="none", stroke=color)} stroke-width="2.5" '
            'marker-end="url(#nb201-arrow)"/>'
            + _text(mid_x, label_y, op, class_="op", text_anchor="middle", font_size=11, fill=color)
        )
        parts.append(_group([label], highlight, body, "edge", data_edge=label, data_op=op))
    for node, x in enumerate(NB201_NODE_X):
        name = {0: "in", len(NB201_NODE_X) - 1: "out"}.get(node, str(node))
        parts.append(
            f"<g {_attrs(class_='node', data_node=node)}><circle {_attrs(cx=x, cy=NB201_Y, r=NODE_R)} "
            f'fill="#f8fafc" stroke="{INK}" stroke-width="1.5"/>'
            + _text(x, NB201_Y + 4.5, name, text_anchor="middle", font_size=13, font_weight=600)
            + "</g>"
        )
    drawn = len(_nb201_edges(arch))
    title = f"NAS-Bench-201 cell: {drawn} of 6 edges carry an op (none edges are not drawn)"
    return _svg(270, title, "".join(parts), "nb201")


# MobileNet stages ----------------------------------------------------------------------------------
def mobilenet_stages(arch: Mapping, widths: list[int], highlight: Iterable[str] = ()) -> str:
    """One row per stage: its width and stride, then one box per inverted-residual block with its
    kernel size and expansion; the stem above and the classifier head below."""
    highlight = frozenset(highlight)
    row_h, top = 46.0, 44.0
    parts = [_box(10, 8, WIDTH - 20, 28, fill="#f1f5f9"), _text(WIDTH / 2, 27, "stem: conv 3×3", text_anchor="middle",
                                                                font_size=12)]  # fmt: skip
    for stage, width in enumerate(widths, start=1):
        depth, kernel, expand = (arch.get(f"stage{stage}_{s}") for s in ("depth", "kernel", "expand"))
        y = top + (stage - 1) * row_h
        stride = "stride 1" if stage == 1 else "stride 2"
        head = (_text(12, y + 18, f"stage {stage}", font_size=12, font_weight=600)
                + _text(12, y + 33, f"{width} ch · {stride}", font_size=10, fill=MUTED))  # fmt: skip
        parts.append(_group([f"stage{stage}_depth"], highlight, head, "stage-head", data_stage=stage))
        for block in range(int(depth or 0)):
            x = 118 + block * 100
            body = _box(x, y + 2, 94, 38) + _text(x + 47, y + 18, "MBConv", text_anchor="middle", font_size=10,
                                                   fill=MUTED)  # fmt: skip
            body += _text(x + 47, y + 34, f"k{kernel} · e{expand}", class_="op", text_anchor="middle", font_size=12,
                          font_weight=600)  # fmt: skip
            labels = [f"stage{stage}_kernel", f"stage{stage}_expand"]
            parts.append(_group(labels, highlight, body, "block", data_stage=stage, data_block=block + 1))
    y = top + len(widths) * row_h + 2
    parts.append(_box(10, y, WIDTH - 20, 28, fill="#f1f5f9"))
    parts.append(
        _text(WIDTH / 2, y + 19, "global pool → linear classifier", text_anchor="middle", font_size=12)
    )
    title = "MobileNet stages: " + ", ".join(
        f"stage {s}: {arch.get(f'stage{s}_depth')} blocks k{arch.get(f'stage{s}_kernel')} e{arch.get(f'stage{s}_expand')}"
        for s in range(1, len(widths) + 1)
    )
    return _svg(y + 36, title, "".join(parts), "mobilenet")


# MLP layers ----------------------------------------------------------------------------------------
def mlp_layers(arch: Mapping, highlight: Iterable[str] = ()) -> str:
    """The layer stack top to bottom: input, one box per hidden layer (width, activation, batch
    norm, dropout; a side arc when it has a skip connection), output."""
    highlight = frozenset(highlight)
    depth = int(arch.get("depth") or 0)
    shared = [k for k in ("activation", "dropout", "batch_norm", "residual") if k in arch]
    extras = [str(arch.get("activation", ""))]
    if arch.get("batch_norm"):
        extras.append("batch norm")
    if arch.get("dropout"):
        extras.append(f"dropout {arch['dropout']}")
    row_h, x, w = 50.0, 70.0, 280.0
    parts = [_box(x + 60, 8, w - 120, 26, fill="#f1f5f9"), _text(WIDTH / 2, 26, "input (flattened)",
                                                                  text_anchor="middle", font_size=12)]  # fmt: skip
    for layer in range(1, depth + 1):
        y = 44 + (layer - 1) * row_h
        body = _box(x, y, w, 40) + _text(x + 12, y + 25, f"Linear {arch.get(f'width_{layer}')}", class_="op",
                                          font_size=13, font_weight=600)  # fmt: skip
        body += _text(x + w - 12, y + 25, " · ".join(e for e in extras if e), text_anchor="end", font_size=11,
                      fill=MUTED)  # fmt: skip
        if arch.get("residual"):
            right = x + w
            arc = f"M{_num(right)} {_num(y + 4)} C{_num(right + 40)} {_num(y + 4)} {_num(right + 40)} {_num(y + 36)} " \
                  f"{_num(right)} {_num(y + 36)}"  # fmt: skip
            body += (f"<path {_attrs(class_='stroke', d=arc, fill='none', stroke=MUTED)} stroke-width=\"1.5\" "
                     'stroke-dasharray="4 3"/>')  # fmt: skip
        labels = [f"width_{layer}", *shared]
        parts.append(_group(labels, highlight, body, "layer", data_layer=layer))
    y = 44 + depth * row_h
    parts.append(_box(x + 60, y, w - 120, 26, fill="#f1f5f9"))
    parts.append(_text(WIDTH / 2, y + 18, "linear → classes", text_anchor="middle", font_size=12))
    widths = "-".join(str(arch.get(f"width_{i}")) for i in range(1, depth + 1))
    return _svg(
        y + 34,
        f"MLP: {depth} hidden layers ({widths}), {', '.join(e for e in extras if e)}",
        "".join(parts),
        "mlp",
    )


# Any other space -----------------------------------------------------------------------------------
def choice_list(arch: Mapping, highlight: Iterable[str] = (), space: str = "") -> str:
    """A space without a drawing of its own: its choices as a two-column list."""
    highlight = frozenset(highlight)
    parts = []
    for row, (label, value) in enumerate(arch.items()):
        y = 8 + row * 26
        body = _box(10, y, WIDTH - 20, 22) + _text(20, y + 16, label, font_size=12, fill=MUTED)
        body += _text(
            WIDTH - 20, y + 16, value, class_="op", text_anchor="end", font_size=12, font_weight=600
        )
        parts.append(_group([str(label)], highlight, body, "choice"))
    return _svg(16 + 26 * max(1, len(arch)), f"{space or 'architecture'}: {len(arch)} choices", "".join(parts),
                space or "other")  # fmt: skip


def draw_architecture(space, arch: Mapping, highlight: Iterable[str] = ()) -> str:
    """The SVG of `arch` in `space` (a SearchSpace): the space's own `draw`, or its choice list."""
    draw = getattr(space, "draw", None)
    if callable(draw):
        return draw(arch, highlight)
    return choice_list(arch, highlight, getattr(space, "name", ""))


def changed_choices(space, a: Mapping, b: Mapping) -> list[str]:
    """The choice labels whose values differ between `a` and `b`, in the space's order; choices
    neither architecture uses (an MLP's width beyond its depth) do not count."""
    labels = list(space.choices()) if space is not None else list(dict.fromkeys([*a, *b]))
    used = set(space.active(a)) | set(space.active(b)) if space is not None else set(labels)
    return [label for label in labels if label in used and a.get(label) != b.get(label)]
