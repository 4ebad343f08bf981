"""Dataset loaders: built-in datasets and user files (CSV, NPZ, image ZIP) turned into a `Task`.

The web side runs these on browser uploads and the CLI on paths, so every loader takes a path or a
binary file object (read from its start when it can seek), and every rejection is a `DatasetError`
naming the file, the field and a reason a person can act on. `load_dataset(spec)` is the one entry
point both share; `meta["source"]` of the Task it returns is that spec again, with the file's name in
place of the path, so a run can say exactly what it was trained on.

Decisions a user will meet:

- Classes get ids in sorted order (numeric labels numerically, so "10" comes after "9"), so the same
  data in another row order gives the same ids; `class_names[i]` is the label of class i. Every class
  needs at least `MIN_ROWS_PER_CLASS` rows so that train, validation and test each see it.
- CSV: UTF-8 (a BOM is fine); the first row is the header; the delimiter is `,` `;` tab or `|`, picked
  from the header unless given; surrounding spaces are stripped; lines whose cells are all empty are
  skipped. Missing values (an empty cell, NA, N/A, NaN, null, ?) are rejected with their line and
  column, never imputed: a filled-in median would quietly change what the search optimises, and the
  person who owns the file knows better what a gap means. Text feature columns are one-hot encoded up to
  `max_categories` distinct values and rejected above that (an ID or free-text column gives a small
  network nothing to learn from and thousands of one-hot columns would swamp the rest; `exclude` drops
  it). A column that is at least 90% numbers is taken to be numeric, and its non-numbers are reported
  as errors rather than turning the whole column into categories.
- NPZ: arrays `X` and `y`, loaded without pickle. X is (N, F) tabular, (N, H, W) grayscale images, or
  (N, C, H, W) / (N, H, W, C) images with 1 or 3 channels. A 4-d X is channel-last when its last axis is
  1 or 3 and its second is not; when both could be channels, channel-first (PyTorch's layout) wins;
  `channels_last=True/False` overrides the guess. uint8 images are scaled by 1/255, uint16 by 1/65535,
  other image dtypes are used as they are (they are standardised anyway).
- ZIP: one folder per class, optionally all inside one top-level folder; PNG and JPEG only; macOS and
  Windows junk (__MACOSX/, .DS_Store, Thumbs.db, hidden files) is ignored. Images are resized (not
  cropped) to image_size x image_size; they get 1 channel when every image is grayscale, else 3, unless
  `grayscale` forces it; transparency is flattened onto white. Entries are never written to disk.

Memory stays bounded by the file, not by what it claims to hold: a CSV is decoded and parsed a chunk at
a time and kept column by column (`csvfile`), and a preview reads only its first 100,000 rows; an NPZ
array is refused from its header, before numpy allocates it, when X and y together exceed `max_bytes`,
when its entry could not hold it, or when it would decompress more than `max_compression_ratio`:1
(default 200; a small file of zeros declaring a gigabyte is a bomb); ZIP entries are streamed and
counted as they decompress.

Layout: `common` (DatasetError, limits, opening sources, the class check and split), one module per
source (`builtin`, `tabular` for CSV with `csvfile` reading it, `npz`, `images` for image ZIPs), `spec`
(`load_dataset`) and `preview` (`describe_task`, `sample_images`).
"""

from .builtin import BUILTIN_DATASETS, _builtin_arrays, load_builtin
from .common import MIN_ROWS_PER_CLASS, DatasetError, MiB, Source
from .images import IMAGE_FORMATS, IMAGE_SUFFIXES, load_image_zip
from .npz import load_npz
from .preview import describe_task, sample_images
from .spec import load_dataset
from .tabular import CSV_DELIMITERS, LABEL_COLUMN_NAMES, MISSING_TOKENS, _read_csv, load_csv, preview_csv

__all__ = [
    "BUILTIN_DATASETS", "CSV_DELIMITERS", "DatasetError", "IMAGE_FORMATS", "IMAGE_SUFFIXES",
    "LABEL_COLUMN_NAMES", "MIN_ROWS_PER_CLASS", "MISSING_TOKENS", "MiB", "Source", "_builtin_arrays",
    "_read_csv", "describe_task", "load_builtin", "load_csv", "load_dataset", "load_image_zip", "load_npz",
    "preview_csv", "sample_images",
]
