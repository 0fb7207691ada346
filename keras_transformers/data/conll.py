"""CoNLL-style token/tag files (NER) into ``tf.data.Dataset``s of sentences, tags in IOB2.

The layout: one token per line, its fields split by whitespace (or a given delimiter), the
token in one column and its tag in another (by default the first and the last); a blank (or
whitespace-only) line ends a sentence; ``-DOCSTART-`` lines mark documents and are skipped.
This reads, among others, CoNLL-2003 (``word POS chunk NER``, space separated, IOB1) and
WNUT-17 (``token<TAB>tag``, IOB2).

Tags are returned in IOB2: ``B-TYPE`` starts every entity, ``I-TYPE`` continues it, ``O`` is
outside. IOB1, where ``I-TYPE`` also starts an entity and ``B-TYPE`` only starts one that
directly follows another of the same type, is converted: an ``I-TYPE`` that does not continue
a token of the same type becomes ``B-TYPE``. That conversion leaves IOB2 unchanged, so
``scheme="auto"`` (the default) reads both; ``scheme="iob2"`` instead checks the file is IOB2.

As for the other readers, files are parsed eagerly (errors name the file and 1-based line),
``.gz`` names are gunzipped, and text is UTF-8.
"""

import tensorflow as tf

from keras_transformers.data.readers import no_data_error, read_text, split_lines

SCHEMES = ("auto", "iob1", "iob2")
_DOCSTART = "-DOCSTART-"


def _check_arguments(scheme, token_column, tag_column, delimiter):
    if scheme not in SCHEMES:
        raise ValueError(f"`scheme` must be one of {', '.join(map(repr, SCHEMES))}, got {scheme!r}.")
    for argument, column in (("token_column", token_column), ("tag_column", tag_column)):
        if not isinstance(column, int) or isinstance(column, bool):
            raise ValueError(f"`{argument}` must be a column index (0 = first, -1 = last), got {column!r}.")
    if delimiter is not None and (not isinstance(delimiter, str) or not delimiter or "\n" in delimiter):
        raise ValueError(f"`delimiter` must be None (any whitespace) or a non-empty string without a line "
                         f"break, e.g. '\\t'; got {delimiter!r}.")


def _to_iob2(name, tags, lines, scheme):
    """One sentence's tags in IOB2, checking each is ``O``, ``B-TYPE`` or ``I-TYPE``."""
    converted = []
    previous_type = None  # the entity type of the previous token; None after O or at the start
    for tag, line in zip(tags, lines):
        if tag == "O":
            converted.append(tag)
            previous_type = None
            continue
        if tag[:1] not in ("B", "I") or tag[1:2] != "-" or not tag[2:]:
            raise ValueError(f"{name}, line {line}: invalid tag {tag!r}; expected O, B-TYPE or I-TYPE "
                             "(IOB1 or IOB2).")
        entity_type = tag[2:]
        if tag[0] == "I" and entity_type != previous_type:  # I- starting an entity: IOB1
            if scheme == "iob2":
                raise ValueError(
                    f"{name}, line {line}: tag {tag!r} starts an entity, which IOB2 tags B-{entity_type}; "
                    "the file looks like IOB1. Pass scheme='iob1' (or 'auto') to convert it.")
            tag = "B-" + entity_type
        converted.append(tag)
        previous_type = entity_type
    return converted


def parse_conll(path, *, scheme="auto", tag_column=-1, token_column=0, delimiter=None):
    """The sentences of a CoNLL file as a list of ``(tokens, tags)`` lists of strings, tags in
    IOB2. Takes the arguments of :func:`read_conll`, which builds its dataset from this list."""
    _check_arguments(scheme, token_column, tag_column, delimiter)
    name, text = read_text(path)
    lines = split_lines(text)
    sentences = []
    tokens, tags, tag_lines = [], [], []
    width = first_line = None
    columns = None

    def end_sentence():
        if tokens:
            sentences.append((list(tokens), _to_iob2(name, tags, tag_lines, scheme)))
            tokens.clear()
            tags.clear()
            tag_lines.clear()

    for number, line in enumerate(lines, 1):
        if not line.strip():
            end_sentence()
            continue
        fields = line.split(delimiter)
        if line.split(None, 1)[0] == _DOCSTART:
            end_sentence()  # a document boundary is a sentence boundary too
            continue
        if width is None:
            width, first_line = len(fields), number
            columns = [column + width if column < 0 else column for column in (token_column, tag_column)]
            for argument, column, index in zip(("token_column", "tag_column"), (token_column, tag_column),
                                               columns):
                if not 0 <= index < width:
                    raise ValueError(f"{name}, line {number}: `{argument}`={column} is outside the "
                                     f"{width} column(s) of the first token line {line!r} "
                                     f"(delimiter {delimiter!r}).")
            if columns[0] == columns[1]:
                raise ValueError(f"{name}, line {number}: `token_column`={token_column} and "
                                 f"`tag_column`={tag_column} are the same column of the first token line "
                                 f"{line!r}, which has {width} column(s) (delimiter {delimiter!r}).")
        elif len(fields) != width:
            raise ValueError(f"{name}, line {number}: {len(fields)} column(s), but the first token line "
                             f"(line {first_line}) has {width} (delimiter {delimiter!r}); the line is {line!r}.")
        token, tag = fields[columns[0]], fields[columns[1]]
        if not token:
            raise ValueError(f"{name}, line {number}: empty token (delimiter {delimiter!r}); the line is "
                             f"{line!r}.")
        tokens.append(token)
        tags.append(tag)
        tag_lines.append(number)
    end_sentence()
    if not sentences:
        raise no_data_error(name, len(lines), "a sentence (a token line other than -DOCSTART-)")
    return sentences


@tf.autograph.experimental.do_not_convert
def _dense(tokens, tags):
    # A slice of a ragged tensor arrives as a RaggedTensorSpec of ragged rank 0, which
    # padded_batch rejects; an identity makes it a plain 1-D tensor.
    return tf.identity(tokens), tf.identity(tags)


def read_conll(path, *, scheme="auto", tag_column=-1, token_column=0, delimiter=None):
    """A dataset of the sentences of a CoNLL file: ``(tokens, tags)``, tags in IOB2.

    Args:
        path: the file; read through gzip when the name ends in ``.gz``.
        scheme: the file's tagging: ``"iob1"`` (converted to IOB2), ``"iob2"`` (checked: an
            ``I-TYPE`` that starts an entity raises), or ``"auto"`` (either; converted as IOB1,
            which leaves IOB2 as it is).
        tag_column: index of the tag among a line's fields (-1 = last).
        token_column: index of the token (0 = first).
        delimiter: None to split on any run of whitespace (CoNLL-2003, WNUT-17), or the exact
            separator, e.g. ``"\\t"`` for tokens that may hold spaces.

    Returns:
        A ``tf.data.Dataset`` of ``(tokens, tags)``: two 1-D ``tf.string`` tensors of shape
        ``(sentence_length,)``, so ``padded_batch`` and ``ragged_batch`` apply. Map tags to ids
        with :func:`conll_tags`, e.g. through ``keras.layers.StringLookup(vocabulary=...,
        num_oov_indices=0)``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: naming the file and line: a token line whose column count differs from the
            file's first token line, a tag that is not ``O``/``B-TYPE``/``I-TYPE`` (or, with
            ``scheme="iob2"``, an ``I-TYPE`` starting an entity), bytes that are not UTF-8, or a
            file without sentences.

    Example:
        >>> dev = read_conll("conll2003/eng.testa")          # IOB1 on disk
        >>> tokens, tags = next(iter(dev))
        >>> [t.decode() for t in tokens.numpy()], [t.decode() for t in tags.numpy()]
        (['CRICKET', '-', 'LEICESTERSHIRE', 'TAKE', ...], ['O', 'O', 'B-ORG', 'O', ...])
        >>> batches = dev.padded_batch(32, padding_values=("", "O"))
    """
    sentences = parse_conll(path, scheme=scheme, tag_column=tag_column, token_column=token_column,
                            delimiter=delimiter)
    lengths = tf.constant([len(tokens) for tokens, _ in sentences], tf.int64)
    tokens = tf.RaggedTensor.from_row_lengths(
        tf.constant([token for sentence, _ in sentences for token in sentence], tf.string), lengths)
    tags = tf.RaggedTensor.from_row_lengths(
        tf.constant([tag for _, sentence in sentences for tag in sentence], tf.string), lengths)
    return tf.data.Dataset.from_tensor_slices((tokens, tags)).map(_dense)


def conll_tags(paths, *, scheme="auto", tag_column=-1, token_column=0, delimiter=None):
    """The sorted IOB2 tag names of one or more CoNLL files: ``O`` and, for every entity type
    found, both ``B-TYPE`` and ``I-TYPE`` (even if one of them never occurs), so the list is the
    label set of a tagger and the same for files with the same types.

    ``paths`` is a path or a list of paths (e.g. train, dev and test, for one label set); the
    other arguments are those of :func:`read_conll`.

    Example:
        >>> conll_tags("conll2003/eng.testa")
        ['B-LOC', 'B-MISC', 'B-ORG', 'B-PER', 'I-LOC', 'I-MISC', 'I-ORG', 'I-PER', 'O']
    """
    if isinstance(paths, (str, bytes)) or hasattr(paths, "__fspath__"):
        paths = [paths]
    paths = list(paths)
    if not paths:
        raise ValueError("`paths` must name at least one file, got an empty list.")
    types = set()
    for path in paths:
        sentences = parse_conll(path, scheme=scheme, tag_column=tag_column, token_column=token_column,
                                delimiter=delimiter)
        types.update(tag[2:] for _, tags in sentences for tag in tags if tag != "O")
    return sorted({"O"} | {f"{prefix}-{entity_type}" for entity_type in types for prefix in "BI"})
