"""Readers of plain, delimited and parallel text files into ``tf.data.Dataset``s.

Every reader parses its file eagerly in Python when called, so a malformed file raises at once:
a ``ValueError`` whose message starts ``"<file>, line <N>: "`` (1-based), or a
``FileNotFoundError`` naming a missing path. Only then is the dataset built, from tensors in
memory (``tf.data.Dataset.from_tensor_slices``), so iterating it does no more parsing.

Common rules:

- A path ending in ``.gz`` is read through gzip.
- Files are UTF-8 (a leading byte order mark is dropped); bytes that are not UTF-8 raise with
  the line they are on.
- Lines end at ``\\n``; a ``\\r`` before it (Windows line endings) is dropped too.

The CoNLL reader is in :mod:`keras_transformers.data.conll`.
"""

import csv
import difflib
import errno
import gzip
import os
import re
import zlib

import tensorflow as tf

_INTEGER = re.compile(r"[0-9]+")


# ---------------------------------------------------------------------------------------------
# Shared file access (also used by conll.py)


def read_text(path):
    """``(name, text)``: the path as a string and the file's decoded text.

    Gunzips a path ending in ``.gz``, drops a leading byte order mark, and raises
    ``FileNotFoundError`` for a missing file and ``ValueError`` naming the line of the first
    byte that is not UTF-8 (or the file, for a broken gzip stream).
    """
    name = os.fspath(path)
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    if not os.path.exists(name):
        raise FileNotFoundError(errno.ENOENT, "No such file", name)
    try:
        if name.endswith(".gz"):
            with gzip.open(name, "rb") as file:
                data = file.read()
        else:
            with open(name, "rb") as file:
                data = file.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{name}: the name ends in .gz but the file is not valid gzip ({err}).") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        raise ValueError(
            f"{name}, line {line}: invalid UTF-8 ({err.reason}: byte(s) "
            f"{data[err.start:err.end]!r} at column {err.start - line_start + 1}).") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return name, text


def split_lines(text, keep_ends=False):
    """The lines of ``text``, split at ``\\n`` only (not at the other characters
    ``str.splitlines`` breaks on). Without ``keep_ends`` each line loses its ``\\n`` and a
    ``\\r`` before it. A final ``\\n`` ends the last line; it does not start an empty one."""
    lines = text.split("\n")
    last = lines.pop()
    if keep_ends:
        lines = [line + "\n" for line in lines]
    else:
        lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    if last:
        lines.append(last[:-1] if not keep_ends and last.endswith("\r") else last)
    return lines


def no_data_error(name, line_count, what):
    """The ``ValueError`` for a file without any ``what`` (e.g. ``"a sentence"``)."""
    if line_count == 0:
        return ValueError(f"{name}, line 1: the file is empty; expected {what}.")
    return ValueError(f"{name}, line {line_count}: reached the end of the file ({line_count} line(s)) "
                      f"without {what}.")


def _check_flag(value, argument):
    if not isinstance(value, bool):
        raise ValueError(f"`{argument}` must be True or False, got {value!r}.")


# ---------------------------------------------------------------------------------------------
# Plain text


def read_lines(path, skip_empty=False):
    """A dataset of the lines of a text file, one scalar ``tf.string`` per line.

    Lines are kept as they are, without their line ending (``\\n`` or ``\\r\\n``), and every
    line is kept unless ``skip_empty=True``, which drops lines that are empty or whitespace only.

    Args:
        path: the file; read through gzip when the name ends in ``.gz``.
        skip_empty: drop empty and whitespace-only lines.

    Returns:
        A ``tf.data.Dataset`` of scalar ``tf.string`` (UTF-8 bytes).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file has no lines (none left after ``skip_empty``), or is not UTF-8
            (the message names the line).

    Example:
        >>> for line in read_lines("val.en.gz").take(1):
        ...     print(line.numpy().decode())
        A group of men are loading cotton onto a truck
    """
    _check_flag(skip_empty, "skip_empty")
    name, text = read_text(path)
    lines = split_lines(text)
    kept = [line for line in lines if line.strip()] if skip_empty else lines
    if not kept:
        raise no_data_error(name, len(lines), "a non-empty line" if skip_empty else "a line")
    return tf.data.Dataset.from_tensor_slices(tf.constant(kept, tf.string))


# ---------------------------------------------------------------------------------------------
# Delimited files (TSV, CSV)


def _delimiter_for(name, delimiter):
    if delimiter is None:
        base = name[:-3] if name.endswith(".gz") else name
        return "," if base.lower().endswith(".csv") else "\t"
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise ValueError(f"`delimiter` must be one character other than a quote or line break (e.g. "
                         f"'\\t' or ','), got {delimiter!r}.")
    return delimiter


def _read_rows(path, delimiter, quoting):
    """``(name, delimiter, rows, line_count)``: the non-blank rows as ``(line, fields)``, where
    ``line`` is the 1-based line the row starts on (a quoted field may span lines)."""
    if quoting is not None:
        _check_flag(quoting, "quoting")
    name, text = read_text(path)
    delimiter = _delimiter_for(name, delimiter)
    if quoting is None:
        quoting = delimiter != "\t"
    lines = split_lines(text, keep_ends=True)
    reader = csv.reader(lines, delimiter=delimiter, strict=True,
                        quoting=csv.QUOTE_MINIMAL if quoting else csv.QUOTE_NONE)
    rows = []
    consumed = 0
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            hint = " (a quoted field that is never closed?)" if "end of data" in str(err) else ""
            raise ValueError(f"{name}, line {consumed + 1}: malformed {'CSV' if quoting else 'row'}: "
                             f"{err}{hint}.") from None
        start, consumed = consumed + 1, reader.line_num
        if fields:  # a blank line is no row
            rows.append((start, fields))
    return name, delimiter, rows, len(lines)


def _resolve_columns(name, columns, header, width, width_line):
    """Each ``(argument, column)`` as a non-negative index: a name looked up in ``header``, a
    negative index counted from the end of the header (or the first row, ``width`` wide)."""
    indices = []
    for argument, column in columns:
        if isinstance(column, str):
            if header is None:
                raise ValueError(f"`{argument}`={column!r} is a column name, but header=False; pass the "
                                 "column's index (0 = first) or set header=True.")
            if column not in header:
                close = difflib.get_close_matches(column, header, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{name}, line {width_line}: `{argument}`={column!r} is not in the header "
                                 f"{header}.{hint}")
            indices.append(header.index(column))
        elif isinstance(column, int) and not isinstance(column, bool):
            if column < -width:
                raise ValueError(f"{name}, line {width_line}: `{argument}`={column} counts back past the "
                                 f"first of the {width} column(s) there.")
            indices.append(column + width if column < 0 else column)
        else:
            raise ValueError(f"`{argument}` must be a column index or a header name, got {column!r}.")
    if len(set(indices)) < len(indices):
        raise ValueError(f"{' and '.join(f'`{a}`={c!r}' for a, c in columns)} are the same column "
                         f"(index {indices[0]}).")
    return indices


def _select_columns(path, columns, delimiter, quoting, header, what):
    """``(name, [(line, values)])``: the values of ``columns`` in every data row."""
    _check_flag(header, "header")
    name, delimiter, rows, line_count = _read_rows(path, delimiter, quoting)
    header_fields, header_line = None, None
    if header and rows:
        header_line, header_fields = rows.pop(0)
    if not rows:
        raise no_data_error(name, line_count, f"{what} after the header" if header else what)
    width, width_line = (len(header_fields), header_line) if header else (len(rows[0][1]), rows[0][0])
    indices = _resolve_columns(name, columns, header_fields, width, width_line)
    needed = max(indices) + 1
    widest = columns[indices.index(max(indices))][0]
    selected = []
    for line, fields in rows:
        if len(fields) < needed:
            raise ValueError(
                f"{name}, line {line}: {len(fields)} column(s), but `{widest}` needs at least {needed} "
                f"(delimiter {delimiter!r}); the row is {fields!r}.")
        selected.append((line, [fields[index] for index in indices]))
    return name, selected


def _label_ids(name, labeled, label_names):
    if label_names is None:
        ids = []
        for line, label in labeled:
            value = label.strip()
            if not _INTEGER.fullmatch(value):
                raise ValueError(f"{name}, line {line}: label {label!r} is not a non-negative integer; pass "
                                 "`label_names` to map label names to ids.")
            ids.append(int(value))
        return ids
    if isinstance(label_names, str) or not all(isinstance(n, str) and n for n in label_names):
        raise ValueError(f"`label_names` must be a list of non-empty strings, got {label_names!r}.")
    label_names = list(label_names)
    if not label_names or len(set(label_names)) < len(label_names):
        repeated = sorted({n for n in label_names if label_names.count(n) > 1})
        raise ValueError(f"`label_names` must be distinct and non-empty, got {label_names!r}"
                         + (f" (repeated: {repeated})." if repeated else "."))
    index = {label: i for i, label in enumerate(label_names)}
    ids = []
    for line, label in labeled:
        value = label.strip()
        if value not in index:
            raise ValueError(f"{name}, line {line}: unknown label {label!r}; `label_names` is {label_names}.")
        ids.append(index[value])
    return ids


def read_labeled(path, text_column=0, label_column=1, *, delimiter=None, header=True, label_names=None,
                 quoting=None):
    """A dataset of ``(text, label_id)`` from a delimited file (TSV, CSV), one pair per row.

    Columns are picked by index (0 = first; negative counts from the end of the header, or of
    the first row without one) or, with a header, by name. A label is a name from
    ``label_names`` (mapped to its position there) or, when ``label_names`` is None, a
    non-negative integer used as the id. Labels are stripped of surrounding whitespace; text is
    kept as it is. Blank lines are skipped; extra columns are ignored.

    Args:
        path: the file; read through gzip when the name ends in ``.gz``.
        text_column: index or header name of the text.
        label_column: index or header name of the label.
        delimiter: one character; default ``","`` for a ``.csv`` (or ``.csv.gz``) name, else tab.
        header: whether the first non-blank row names the columns (it is not data).
        label_names: the class names, the id of each being its position; None for integer labels.
        quoting: whether ``"``-quoted fields are parsed (RFC 4180 / Excel style: a quoted field
            may hold the delimiter, line breaks and ``""`` for a quote). Default: True for a
            comma, False for a tab (TSV text such as SST-2 or Anki pairs quotes freely).

    Returns:
        A ``tf.data.Dataset`` of ``(text, label_id)``: scalar ``tf.string`` and scalar ``tf.int32``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming the file and line: a row with fewer columns than the text or label
            column needs, a label that is not in ``label_names`` (or not an integer), a column
            name that is not in the header, malformed quoting, bytes that are not UTF-8, or a
            file without data rows.

    Example:
        >>> dev = read_labeled("sst2/dev.tsv", "sentence", "label")   # header `sentence\\tlabel`
        >>> text, label = next(iter(dev))
        >>> text.numpy().decode(), int(label)
        ("it 's a charming and often affecting journey . ", 1)
        >>> read_labeled("reviews.csv", "review", "sentiment", label_names=["neg", "pos"])
    """
    name, rows = _select_columns(path, [("text_column", text_column), ("label_column", label_column)],
                                 delimiter, quoting, header, "a data row")
    ids = _label_ids(name, [(line, values[1]) for line, values in rows], label_names)
    texts = tf.constant([values[0] for _, values in rows], tf.string)
    return tf.data.Dataset.from_tensor_slices((texts, tf.constant(ids, tf.int32)))


# ---------------------------------------------------------------------------------------------
# Parallel text


def read_pairs(source_path, target_path=None, *, delimiter=None, header=False, source_column=0,
               target_column=1, quoting=None, skip_empty=False):
    """A dataset of ``(source, target)`` sentence pairs, e.g. for translation.

    Either two files aligned line by line (``read_pairs("val.de.gz", "val.en.gz")``: line i of
    one translates line i of the other; every line is kept, empty ones too, so the alignment
    holds), or one delimited file with a source and a target column (``read_pairs("pairs.tsv")``;
    blank lines are skipped and extra columns, such as Anki's attribution, ignored). Strings are
    kept as they are, without line endings.

    Args:
        source_path: the source-side file, or the one two-column file.
        target_path: the target-side file; None for a two-column file.
        delimiter, header, quoting: for the two-column file, as in :func:`read_labeled`
            (default: tab, or ``","`` for a ``.csv`` name; no header).
        source_column, target_column: for the two-column file, index (or header name) of each side.
        skip_empty: drop the pairs whose source or target is empty or whitespace only.

    Returns:
        A ``tf.data.Dataset`` of ``(source, target)``, two scalar ``tf.string``.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: two files with different line counts (naming both and their counts), an
            empty file, a row with too few columns, malformed quoting or bytes that are not
            UTF-8 (naming the file and line), or no pair left after ``skip_empty``.

    Example:
        >>> pairs = read_pairs("multi30k/val.de.gz", "multi30k/val.en.gz")
        >>> source, target = next(iter(pairs))
        >>> source.numpy().decode(), target.numpy().decode()
        ('Eine Gruppe von Männern lädt Baumwolle auf einen Lastwagen',
         'A group of men are loading cotton onto a truck')
    """
    _check_flag(skip_empty, "skip_empty")
    if target_path is None:
        name, rows = _select_columns(
            source_path, [("source_column", source_column), ("target_column", target_column)],
            delimiter, quoting, header, "a data row")
        pairs = [values for _, values in rows]
        where = f"{name}, line {rows[-1][0]}"
    else:
        single_file = {"delimiter": (delimiter, None), "header": (header, False), "quoting": (quoting, None),
                       "source_column": (source_column, 0), "target_column": (target_column, 1)}
        passed = [argument for argument, (value, default) in single_file.items() if value != default]
        if passed:
            raise ValueError(f"{', '.join(f'`{a}`' for a in passed)} describe(s) a single two-column file; "
                             "with `target_path` each file holds one side, one sentence per line.")
        source_name, source_text = read_text(source_path)
        target_name, target_text = read_text(target_path)
        sources, targets = split_lines(source_text), split_lines(target_text)
        for name, lines in ((source_name, sources), (target_name, targets)):
            if not lines:
                raise no_data_error(name, 0, "a line")
        if len(sources) != len(targets):
            raise ValueError(f"The files are not aligned: {source_name} has {len(sources)} lines but "
                             f"{target_name} has {len(targets)}; line i of one must translate line i of "
                             "the other.")
        pairs = list(zip(sources, targets))
        where = f"{source_name} and {target_name}, line {len(sources)}"
    if skip_empty:
        pairs = [pair for pair in pairs if pair[0].strip() and pair[1].strip()]
        if not pairs:
            raise ValueError(f"{where}: reached the end without a pair whose source and target are both "
                             "non-empty (skip_empty=True).")
    sources = tf.constant([source for source, _ in pairs], tf.string)
    targets = tf.constant([target for _, target in pairs], tf.string)
    return tf.data.Dataset.from_tensor_slices((sources, targets))
