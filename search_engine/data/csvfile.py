"""Reading a CSV in bounded memory: the file is decoded and parsed chunk by chunk, and the cells are
kept column by column, each column as a few NUL-joined strings (about one byte per character), not as
a Python list of strings per row. A list of one column's cells is made only while it is encoded.

A 60 MB file of tiny rows held as lists took 3 GB; kept this way it takes about its own size."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from array import array
from collections import Counter
from collections.abc import Iterator
from functools import cached_property
from typing import IO

from .common import DatasetError, Source, _display_name, _open_binary, _quote_list, human_bytes

CSV_DELIMITERS = (",", ";", "\t", "|")
_CHUNK_BYTES = 1 << 20
_BLOCK_ROWS = 1024
# More columns than any table a person trains on (load_csv takes 1,000 features): a header of a
# million tiny names would otherwise cost a million lists before a single row is read.
MAX_COLUMNS = 10_000
_SEP = "\x00"  # can not occur in a cell: a file holding NUL bytes is refused
_BOM = codecs.BOM_UTF8


class _CsvTable:
    """The parsed file: header, delimiter, the cells column by column and the line each row starts on.

    `complete` is False when reading stopped at `max_rows` (a preview's prefix)."""

    def __init__(self, file: str, delimiter: str, columns: list[str], parts: list[list[str]], lines: array,
                 complete: bool = True):  # fmt: skip
        self.file = file
        self.delimiter = delimiter
        self.columns = columns
        self._parts: list[list[str] | None] = parts  # per column: blocks of its cells joined with _SEP
        self.lines = lines  # the line each row starts on, for messages
        self.complete = complete

    @property
    def n_rows(self) -> int:
        return len(self.lines)

    def column(self, index: int) -> list[str]:
        values: list[str] = []
        for block in self._parts[index]:
            values.extend(block.split(_SEP))
        return values

    def drop_cells(self, index: int | None = None) -> None:
        """Free a column's cells (all columns' without `index`) once encoded; column() of it fails after."""
        for i in range(len(self._parts)) if index is None else [index]:
            self._parts[i] = None

    @cached_property
    def rows(self) -> list[list[str]]:
        """Row by row, for callers that walk rows (a table of architectures, not a dataset)."""
        return [list(row) for row in zip(*(self.column(i) for i in range(len(self.columns))))]


def _as_number(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def _fields(line: str, delimiter: str) -> int:
    try:
        return len(next(csv.reader([line], delimiter=delimiter)))
    except csv.Error:  # e.g. the whole line as one field, over csv's field size limit
        return 1


def _pick_delimiter(first_line: str) -> str:
    counts = [(_fields(first_line, d), -i, d) for i, d in enumerate(CSV_DELIMITERS)]
    return max(counts)[2]


def _check_size(handle: IO[bytes], file: str, max_bytes: int) -> None:
    """Refuse a file over the limit before parsing any of it, when its size can be known."""
    seekable = getattr(handle, "seekable", None)
    try:
        if seekable is not None and seekable():
            here = handle.tell()
            size = handle.seek(0, io.SEEK_END) - here
            handle.seek(here)
            if size > max_bytes:
                _too_large(file, max_bytes)
    except (AttributeError, OSError, ValueError):
        pass


def _too_large(file: str, max_bytes: int):
    raise DatasetError(file, "file", f"is larger than {human_bytes(max_bytes)} (limit max_bytes={max_bytes})")


def _decode_error(file: str, exc: UnicodeDecodeError, line: int, utf16: bool) -> DatasetError:
    hint = " (it looks like UTF-16)" if utf16 else ""
    return DatasetError(
        file,
        "encoding",
        f"not UTF-8 text{hint}: byte 0x{exc.object[exc.start]:02x} on line {line} cannot be decoded; "
        f"save the file as 'CSV UTF-8'",
    )


def _text_lines(handle: IO[bytes], file: str, max_bytes: int) -> Iterator[str]:
    """The file's lines as str, split as io.StringIO(text, newline="") splits them, read 1 MiB at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    read = newlines = 0
    carry, utf16 = "", None
    while True:
        raw = handle.read(_CHUNK_BYTES)
        if utf16 is None:
            utf16 = raw[:2] in (b"\xff\xfe", b"\xfe\xff")
            raw = raw[len(_BOM):] if raw.startswith(_BOM) else raw
        read += len(raw)
        if read > max_bytes:
            _too_large(file, max_bytes)
        pending = len(decoder.getstate()[0])
        try:
            text = decoder.decode(raw, final=not raw)
        except UnicodeDecodeError as exc:
            at = max(exc.start - pending, 0)  # in raw; pending bytes are never newlines
            raise _decode_error(file, exc, newlines + raw.count(b"\n", 0, at) + 1, utf16) from None
        newlines += raw.count(b"\n")
        if "\x00" in text:
            raise DatasetError(file, "file", "contains NUL bytes; this looks like a binary file, not a CSV")
        pieces = io.StringIO(carry + text, newline="").readlines()
        # The last piece may be half a line, or a "\r" whose "\n" is in the next chunk.
        carry = pieces.pop() if pieces and raw and not pieces[-1].endswith("\n") else ""
        yield from pieces
        if not raw:
            return


def _check_header(file: str, columns: list[str]) -> None:
    if len(columns) > MAX_COLUMNS:
        raise DatasetError(
            file, "header", f"has {len(columns)} columns, over the limit of {MAX_COLUMNS}; is this really a table?"
        )
    for i, name in enumerate(columns, start=1):
        if not name:
            raise DatasetError(file, "header", f"column {i} has no name; every column needs a name")
    if all(_as_number(name) is not None for name in columns):
        raise DatasetError(
            file,
            "header",
            f"the first row looks like data ({_quote_list(columns, 4)}), not column names; "
            f"add a header row naming the columns",
        )
    duplicates = [name for name, count in Counter(columns).items() if count > 1]
    if duplicates:
        raise DatasetError(
            file, "header", f"column names must be unique; repeated: {_quote_list(duplicates)}"
        )


def _store(block: list[list[str]], parts: list[list[str]]) -> None:
    for index, cells in enumerate(zip(*block)):
        parts[index].append(_SEP.join(cells))


def _read_csv(
    source: Source, *, max_bytes: int, max_rows: int, delimiter: str | None, prefix: bool = False,
    index_name: str | None = None,
) -> _CsvTable:
    """Parse the file; over `max_rows` data rows is refused, or with `prefix` ends the reading there.
    With `index_name`, an unnamed first column (the index pandas' `to_csv()` writes) takes that
    name instead of being refused; datasets keep insisting on named columns."""
    file = _display_name(source)
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in '"\r\n'):
        raise DatasetError(None, "delimiter", f"must be one character other than a quote, got {delimiter!r}")
    with _open_binary(source, file) as handle:
        _check_size(handle, file, max_bytes)
        lines = _text_lines(handle, file, max_bytes)
        first = next(lines, "")
        if delimiter is None:
            delimiter = _pick_delimiter(first.split("\n", 1)[0])
        return _parse(file, itertools.chain([first], lines), delimiter, max_rows, prefix, index_name)


def _parse(file: str, lines: Iterator[str], delimiter: str, max_rows: int, prefix: bool,
           index_name: str | None = None) -> _CsvTable:
    reader = csv.reader(lines, delimiter=delimiter)
    columns: list[str] | None = None
    parts: list[list[str]] = []
    block: list[list[str]] = []
    starts = array("q")
    line, complete = 1, True
    try:
        for row in reader:
            cells = [cell.strip() for cell in row]
            if not any(cells):
                line = reader.line_num + 1
                continue
            if columns is None:
                columns = cells
                if index_name and not columns[0] and any(columns[1:]):
                    columns[0] = index_name
                _check_header(file, columns)
                parts = [[] for _ in columns]
            else:
                if len(cells) != len(columns):
                    raise DatasetError(
                        file,
                        f"line {line}",
                        f"has {len(cells)} values but the header has {len(columns)} columns; "
                        f"every row needs exactly one value per column",
                    )
                if len(starts) == max_rows:
                    if prefix:
                        complete = False
                        break
                    raise DatasetError(
                        file, "rows", f"has more than {max_rows} data rows (limit max_rows={max_rows})"
                    )
                block.append(cells)
                starts.append(line)
                if len(block) == _BLOCK_ROWS:
                    _store(block, parts)
                    block = []
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DatasetError(file, f"line {reader.line_num}", f"is not valid CSV: {exc}") from None
    if columns is None:
        raise DatasetError(file, "file", "is empty; expected a header row and data rows")
    if not starts:
        raise DatasetError(file, "rows", "the file has a header but no data rows")
    _store(block, parts)
    return _CsvTable(file, delimiter, columns, parts, starts, complete)
