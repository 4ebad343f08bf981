"""MODEL_CARD.md from `model_card.md` (string.Template): what the model expects in plain words, the
predict.py call, a numpy + onnxruntime snippet on the raw data, and the numbers those print.

Callers add their own context (`CardContext`): the web side puts its experiment, project, dataset
checksum, search configuration and constraint limits into the same card the CLI writes.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from string import Template
from typing import Any

from ..rules import CONSTRAINT_LIMITS

TEMPLATE = Path(__file__).with_name("model_card.md")
VERSION_PACKAGES = ("torch", "numpy", "onnx", "onnxruntime", "safetensors")


@dataclass
class CardContext:
    """What a caller knows that the engine does not; every field is optional."""

    title: str | None = None  # the heading
    intro: str | None = None  # a paragraph under it: who exported what, from where
    source: str | None = None  # the dataset in words (a file name, its checksum)
    data_lines: list[str] = field(default_factory=list)  # more "- ..." lines under Data
    search: list[str] = field(default_factory=list)  # the "Search" section's "- ..." lines
    constraints: dict[str, Any] = field(default_factory=dict)  # limit key (max_params, ...) -> limit
    results: list[str] = field(default_factory=list)  # more "- ..." lines under Results
    weights_note: str | None = None  # where the weights come from
    versions: dict[str, str] | None = None  # library versions; None: the ones installed here


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def constraint_table(metrics: dict, limits: dict[str, Any]) -> str:
    """Markdown rows of each constrained metric: value, limit, within."""
    rows = ["| constraint | value | limit | within |", "|---|---|---|---|"]
    for metric, key in CONSTRAINT_LIMITS.items():
        value, limit = metrics.get(metric), limits.get(key)
        ok = "-" if limit is None or value is None else ("yes" if value <= limit else "NO")
        rows.append(f"| {metric} | {fmt(value)} | {fmt(limit)} | {ok} |")
    return "\n".join(rows) + "\n"


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return versions


def _quoted(name: str) -> str:
    return f'"{name}"' if any(c in name for c in " '&;()$") else name


def expects(spec: dict) -> str:
    source = spec["source"]
    text = f"Raw data, as it came: {spec['description']}."
    if source == "csv":
        text += (f" The label column `{spec['target']}` may be there (then predict.py scores it); missing values are "
                 f"{spec['missing']}.")
        if spec.get("encoded_in") == "predict.py":
            text += (" Text columns are one-hot encoded by `predict.py` (categories in `architecture.json`); "
                     "`model.onnx` itself takes the encoded float32 columns.")
    elif source == "builtin":
        text += f" Save it, with the labels, as `{spec['file']}` (see below) to use `predict.py`."
    elif source == "zip":
        text += " `predict.py` takes an image file, a folder of class folders or the ZIP itself and does the resizing."
    return text


def preprocessing(spec: dict, normalize: dict | None) -> str:
    steps = [f"cast to float32 (input {spec['dtype']})"]
    if spec.get("scale"):
        steps.append(f"divided by {spec['scale']:g}")
    if spec.get("layout") == "NHWC":
        steps.append("moved to channels-first (N, C, H, W)")
    if normalize and isinstance(normalize.get("mean"), (int, float)):
        steps.append(f"standardised as (x - {normalize['mean']:.6g}) / {normalize['std']:.6g} (train-set mean and std)")
    elif normalize:
        steps.append("each feature standardised with its train-set mean and std (`normalize` in architecture.json)")
    return ", ".join(steps) + "; then the network and a softmax."


def make_file(spec: dict) -> str:
    if spec["source"] != "builtin":
        return ""
    code = "; ".join(spec["make_file"])
    return (f"\nFor a built-in dataset your raw data is the package's own array; save it with\n\n"
            f"```sh\npython -c '{code}'\n```\n")


def snippet(spec: dict) -> str:
    """Lines that run model.onnx on the test rows of the raw file and print the accuracy."""
    file = spec.get("file") or "data.npz"
    scorer = 'print(f"accuracy {np.mean(labels[probs.argmax(1)] == truth):.4f}")'
    modules = {"csv": "csv, ", "zip": "io, zipfile, "}.get(spec["source"], "")
    head = [f"import {modules}json, numpy as np, onnxruntime as ort",
            *(["from PIL import Image"] if spec["source"] == "zip" else []),
            'labels, test = np.array(json.load(open("labels.json"))), json.load(open("split.json"))["test"]']
    run = 'probs = ort.InferenceSession("model.onnx").run(None, {"input": X})[0]'
    if spec["source"] == "csv":
        return "\n".join([*head, *_csv_lines(spec, file), run, scorer])
    if spec["source"] == "zip":
        return "\n".join([*head, *_zip_lines(spec, file), run, scorer])
    truth = 'labels[data["y"][test]]' if spec.get("labels") == "index" else 'data["y"][test].astype(str)'
    return "\n".join([*head, f'data = np.load("{file}")', f'X, truth = data["X"][test].astype(np.{spec["dtype"]}), {truth}',
                      run, scorer])


def _csv_lines(spec: dict, file: str) -> list[str]:
    target = spec["target"]
    table = (f'table = [[c.strip() for c in r] for r in csv.reader(open("{file}", newline="", encoding="utf-8-sig"), '
             f'delimiter={spec["delimiter"]!r}) if any(c.strip() for c in r)]')
    if spec.get("encoded_in") == "predict.py":
        cell = ('[x for f in features for x in ([float(r[head.index(f["name"])])] if f["kind"] == "numeric" '
                'else [float(r[head.index(f["name"])] == c) for c in f["categories"]])]')
    else:
        cell = '[float(r[head.index(f["name"])]) for f in features]'
    label = f"r[head.index({target!r})]"
    if spec.get("target_kind") == "numeric":
        label = f"str(int(float({label})))"
    return [table, 'head, features = table[0], json.load(open("architecture.json"))["raw_input"]["features"]',
            "rows = [table[1 + i] for i in test]",
            f"X, truth = np.array([{cell} for r in rows], np.float32), [{label} for r in rows]"]


def _zip_lines(spec: dict, file: str) -> list[str]:
    size, mode = spec["image_size"], "L" if spec["channels"] == 1 else "RGB"
    image = (f'np.asarray(Image.open(io.BytesIO(zf.read(n))).convert("{mode}").resize(({size}, {size}), '
             f'Image.Resampling.BILINEAR, reducing_gap=2.0)).reshape({size}, {size}, {spec["channels"]})')
    return [f'zf = zipfile.ZipFile("{file}")',
            f'X, truth = np.stack([{image} for n in test]), [n.split("/")[-2] for n in test]']


def render(fields: dict[str, str]) -> str:
    return Template(TEMPLATE.read_text(encoding="utf-8")).substitute(fields)


def card_fields(spec: dict, task, metrics: dict, measured, context: CardContext) -> dict[str, str]:
    """Every $name of the template, from the input description, the task, the metrics and the
    accuracy measured on the exported model."""
    sizes = task.describe()["sizes"]
    file = spec.get("file") or "data.npz"
    image = spec["source"] == "zip"
    versions = context.versions if context.versions is not None else library_versions()
    return {
        "title": context.title or f"{task.name}: NAS Studio model",
        "intro": context.intro or f"Exported by NAS Studio's engine from a search on `{task.name}`.",
        "expects": expects(spec),
        "classes": ", ".join(f"`{c}`" for c in task.class_names),
        "input_example": _quoted(file),
        "pillow": ", and Pillow for images" if image else "",
        "pip": "numpy onnxruntime" + (" pillow" if image else ""),
        "label_note": " (a class folder's name is its images' label)" if image else "",
        "make_file": make_file(spec),
        "unit": "images" if image else "rows",
        "test_text": measured.text,
        "test_short": f"{measured.accuracy:.4f}" if measured.total else "-",
        "file": file,
        "snippet": snippet(spec),
        "source": context.source or _source_words(spec),
        "description": spec["description"],
        "sizes": f"{sizes['train']}/{sizes['val']}/{sizes['test']}",
        "split_seed": str(task.meta.get("split_seed", "-")),
        "preprocessing": preprocessing(spec, task.meta.get("normalize")),
        "data_lines": "".join(f"{line}\n" for line in context.data_lines),
        "search_section": ("\n## Search\n\n" + "".join(f"{line}\n" for line in context.search)) if context.search else "",
        "test_total": str(measured.total),
        "result_lines": _result_lines(metrics, context),
        "constraints": "\n" + constraint_table(metrics, context.constraints),
        "dtype": spec["dtype"],
        "shape": ", ".join(str(d) for d in spec["shape"]),
        "num_classes": str(task.num_classes),
        "versions": "\n".join(f"- {k} {v}" for k, v in versions.items()),
    }


def _source_words(spec: dict) -> str:
    if spec["source"] == "builtin":
        return f"the built-in dataset `{spec['dataset']}`"
    return f"`{spec.get('file') or 'arrays'}`"


def _result_lines(metrics: dict, context: CardContext) -> str:
    lines = [
        f"- Validation accuracy during the search: {fmt(metrics.get('val_acc'))}",
        f"- Test accuracy during the search: {fmt(metrics.get('test_acc'))}",
        *context.results,
    ]
    if context.weights_note:
        lines.append(f"- {context.weights_note}")
    return "".join(f"{line}\n" for line in lines)
