"""Text readers: exact elements from good files; file and line in every error; gzip; IOB1 -> IOB2.

Every file here is a hand-made snippet written to tmp_path (no CoNLL-2003 text is stored in
the repository); the real datasets under /work/shared/data are read only by the slow tests.
"""

import gzip
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from keras_transformers.data import (
    conll_tags,
    parse_conll,
    read_conll,
    read_labeled,
    read_lines,
    read_pairs,
)

SHARED = "/work/shared/data"


def write(tmp_path, name, text):
    """Write ``text`` (str as UTF-8, or bytes) to ``tmp_path / name``, gzipped for a .gz name."""
    path = tmp_path / name
    data = text.encode("utf-8") if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    return path


def located(path, line):
    """A pattern for an error message naming ``path`` and ``line``."""
    return re.escape(f"{path}, line {line}:")


def values(dataset):
    """A dataset's elements as Python values: bytes decoded, 1-D string tensors as lists."""
    def convert(value):
        if isinstance(value, bytes):
            return value.decode("utf-8")
        if isinstance(value, np.ndarray):
            return [convert(v) for v in value.tolist()]
        return value.item() if isinstance(value, np.generic) else value
    return [tuple(convert(v) for v in element) if isinstance(element, tuple) else convert(element)
            for element in dataset.as_numpy_iterator()]


# ---------------------------------------------------------------------------------------------
# read_lines


def test_read_lines_keeps_every_line_without_its_ending(tmp_path):
    path = write(tmp_path, "text.txt", "first line\n\n  \r\nlast ünïcode line ")
    dataset = read_lines(path)
    assert dataset.element_spec == tf.TensorSpec([], tf.string)
    assert values(dataset) == ["first line", "", "  ", "last ünïcode line "]
    assert values(read_lines(path, skip_empty=True)) == ["first line", "last ünïcode line "]
    # A final newline ends the last line; it does not add an empty one.
    assert values(read_lines(write(tmp_path, "ended.txt", "a\nb\n"))) == ["a", "b"]


def test_read_lines_empty_files_raise_with_file_and_line(tmp_path):
    empty = write(tmp_path, "empty.txt", "")
    with pytest.raises(ValueError, match=located(empty, 1) + " the file is empty"):
        read_lines(empty)
    blank = write(tmp_path, "blank.txt", "\n \n")
    assert values(read_lines(blank)) == ["", " "]
    with pytest.raises(ValueError, match=located(blank, 2) + " reached the end of the file"):
        read_lines(blank, skip_empty=True)


# ---------------------------------------------------------------------------------------------
# Errors every reader shares: missing file, invalid UTF-8, gzip


READERS = {
    "read_lines": read_lines,
    "read_labeled": lambda path: read_labeled(path, header=False),
    "read_pairs": read_pairs,
    "read_conll": read_conll,
}


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_missing_file_names_the_path(tmp_path, reader):
    path = tmp_path / "nowhere" / "missing.tsv"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        reader(path)


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS.keys())
def test_invalid_utf8_names_its_line(tmp_path, reader):
    path = write(tmp_path, "latin1.tsv", "ok\tO\n\nalso\tO\ncaf\xe9\tO\n".encode("latin-1"))
    with pytest.raises(ValueError, match=located(path, 4) + " invalid UTF-8.*column 4"):
        reader(path)


def test_gzip_round_trip_for_every_reader(tmp_path):
    lines = "Zwei Männer.\nEin Hund.\n"
    for name in ("lines.txt", "lines.txt.gz"):
        assert values(read_lines(write(tmp_path, name, lines))) == ["Zwei Männer.", "Ein Hund."]
    tsv = "sentence\tlabel\ngood film \t1\nbad\t0\n"
    for name in ("sst.tsv", "sst.tsv.gz"):
        assert values(read_labeled(write(tmp_path, name, tsv), "sentence", "label")) == [
            ("good film ", 1), ("bad", 0)]
    source = write(tmp_path, "val.de.gz", lines)
    target = write(tmp_path, "val.en.gz", "Two men.\nA dog.\n")
    assert values(read_pairs(source, target)) == [("Zwei Männer.", "Two men."), ("Ein Hund.", "A dog.")]
    conll = "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\n"
    for name in ("ner.conll", "ner.conll.gz"):
        assert values(read_conll(write(tmp_path, name, conll))) == [(["EU", "rejects"], ["B-ORG", "O"])]
    # The .gz name is what selects gzip: plain bytes under it are an error naming the file.
    fake = write(tmp_path, "plain.txt", "not gzip\n")
    fake = fake.rename(tmp_path / "plain.txt.gz")
    with pytest.raises(ValueError, match=re.escape(f"{fake}: the name ends in .gz but the file is not")):
        read_lines(fake)


# ---------------------------------------------------------------------------------------------
# read_labeled


def test_read_labeled_sst2_layout(tmp_path):
    path = write(tmp_path, "dev.tsv", "sentence\tlabel\n"
                                      "it 's a charming and often affecting journey . \t1\n"
                                      "unflinchingly bleak and desperate \t0\n"
                                      "\n"
                                      "\"quoted\" words stay as they are \t 1 \n")
    expected = [("it 's a charming and often affecting journey . ", 1),
                ("unflinchingly bleak and desperate ", 0),
                ('"quoted" words stay as they are ', 1)]
    dataset = read_labeled(path, text_column="sentence", label_column="label")
    assert dataset.element_spec == (tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32))
    assert values(dataset) == expected
    assert values(read_labeled(path)) == expected  # columns 0 and 1, tab for a .tsv name
    assert values(read_labeled(path, text_column=-2, label_column=-1)) == expected
    named = values(read_labeled(path, "sentence", "label", label_names=["1", "0"]))
    assert [label for _, label in named] == [0, 1, 0]


def test_read_labeled_label_names_and_unknown_labels(tmp_path):
    path = write(tmp_path, "reviews.tsv", "pos\tgreat\nneg\tawful\n\npos\tfine\nneutral\tmeh\n")
    with pytest.raises(ValueError, match=located(path, 5) + " unknown label 'neutral'"):
        read_labeled(path, 1, 0, header=False, label_names=["neg", "pos"])
    head = write(tmp_path, "head.tsv", "pos\tgreat\nneg\tawful\n\npos\tfine\n")
    assert values(read_labeled(head, 1, 0, header=False, label_names=("neg", "pos"))) == [
        ("great", 1), ("awful", 0), ("fine", 1)]
    with pytest.raises(ValueError, match=located(head, 1) + " label 'pos' is not a non-negative integer"):
        read_labeled(head, 1, 0, header=False)
    with pytest.raises(ValueError, match=r"`label_names` must be distinct.*repeated: \['pos'\]"):
        read_labeled(head, 1, 0, header=False, label_names=["pos", "neg", "pos"])
    negative = write(tmp_path, "negative.tsv", "text\tlabel\nfine\t1\nodd\t-1\n")
    with pytest.raises(ValueError, match=located(negative, 3) + " label '-1' is not a non-negative integer"):
        read_labeled(negative)


def test_read_labeled_csv_quoting(tmp_path):
    path = write(tmp_path, "reviews.csv",
                 'id,review,sentiment\r\n'
                 '1,"Good, not great",pos\r\n'
                 '2,"She said ""wow""",pos\r\n'
                 '3,"two\nlines",neg\r\n'
                 '4,plain,neg\r\n'
                 '5,missing sentiment\r\n')
    columns = dict(text_column="review", label_column="sentiment", label_names=["neg", "pos"])
    # Row 5 (on line 7, after the two-line field) has too few columns.
    with pytest.raises(ValueError, match=located(path, 7) + " 2 column.*`label_column` needs at least 3"):
        read_labeled(path, **columns)
    good = write(tmp_path, "good.csv.gz", "".join(path.read_text().splitlines(keepends=True)[:6]))
    assert values(read_labeled(good, **columns)) == [
        ("Good, not great", 1), ('She said "wow"', 1), ("two\nlines", 0), ("plain", 0)]
    # quoting=False reads the quotes as text (and the comma inside them as a delimiter).
    # A row is reported at the line it starts on, also when a quoted field spans lines.
    spanning = write(tmp_path, "spanning.csv", 'text,label\n"spans\ntwo lines",maybe\n')
    with pytest.raises(ValueError, match=located(spanning, 2) + " unknown label 'maybe'"):
        read_labeled(spanning, label_names=["no", "yes"])
    first = write(tmp_path, "first.csv", 'id,review\n1,"Good, not great"\n')
    assert values(read_labeled(first, "review", "id", quoting=False)) == [('"Good', 1)]


def test_read_labeled_malformed_csv_names_the_line(tmp_path):
    unclosed = write(tmp_path, "unclosed.csv", 'text,label\nfine,1\n"never closed,1\nmore,0\n')
    with pytest.raises(ValueError, match=located(unclosed, 3) + " malformed CSV.*never closed"):
        read_labeled(unclosed)
    stray = write(tmp_path, "stray.csv", 'text,label\n"quoted"tail,1\n')
    with pytest.raises(ValueError, match=located(stray, 2) + " malformed CSV"):
        read_labeled(stray)


def test_read_labeled_columns_and_empty_files(tmp_path):
    path = write(tmp_path, "data.tsv", "sentence\tlabel\nshort row\n")
    with pytest.raises(ValueError, match=located(path, 2) + " 1 column.*`label_column` needs at least 2"):
        read_labeled(path)
    with pytest.raises(ValueError, match=located(path, 1) + " `label_column`='labels' is not in the header "
                                          r"\['sentence', 'label'\]\. Did you mean 'label'\?"):
        read_labeled(path, "sentence", "labels")
    with pytest.raises(ValueError, match="`text_column`='sentence' is a column name, but header=False"):
        read_labeled(path, "sentence", 1, header=False)
    with pytest.raises(ValueError, match="`delimiter` must be one character"):
        read_labeled(path, delimiter="::")
    header_only = write(tmp_path, "header.tsv", "sentence\tlabel\n\n")
    with pytest.raises(ValueError, match=located(header_only, 2) + " reached the end.*after the header"):
        read_labeled(header_only)
    empty = write(tmp_path, "empty.csv", "")
    with pytest.raises(ValueError, match=located(empty, 1) + " the file is empty"):
        read_labeled(empty)


# ---------------------------------------------------------------------------------------------
# read_pairs


def test_read_pairs_two_aligned_files(tmp_path):
    source = write(tmp_path, "train.de", "Ein Hund rennt.\n\nZwei Katzen.\n")
    target = write(tmp_path, "train.en", "A dog runs.\nBlank source.\n\n")
    assert values(read_pairs(source, target)) == [
        ("Ein Hund rennt.", "A dog runs."), ("", "Blank source."), ("Zwei Katzen.", "")]
    assert values(read_pairs(source, target, skip_empty=True)) == [("Ein Hund rennt.", "A dog runs.")]
    short = write(tmp_path, "short.en", "A dog runs.\nTwo cats.")
    with pytest.raises(ValueError, match=re.escape(f"{source} has 3 lines but {short} has 2")):
        read_pairs(source, short)
    with pytest.raises(ValueError, match="`header`, `target_column` describe"):
        read_pairs(source, target, header=True, target_column=2)
    empty = write(tmp_path, "empty.en", "")
    with pytest.raises(ValueError, match=located(empty, 1) + " the file is empty"):
        read_pairs(source, empty)


def test_read_pairs_one_two_column_file(tmp_path):
    # Anki style: a third (attribution) column is ignored; quotes in TSV text are text.
    path = write(tmp_path, "spa.txt", 'Go.\tVe.\tCC-BY 2.0\n"Run!"\t"¡Corre!"\tCC-BY 2.0\n\nHi.\tHola.\n')
    assert values(read_pairs(path)) == [("Go.", "Ve."), ('"Run!"', '"¡Corre!"'), ("Hi.", "Hola.")]
    assert values(read_pairs(path, source_column=1, target_column=0))[0] == ("Ve.", "Go.")
    csv_path = write(tmp_path, "pairs.csv", 'en,fr\n"Yes, sir.","Oui, monsieur."\n')
    assert values(read_pairs(csv_path, header=True, source_column="en", target_column="fr")) == [
        ("Yes, sir.", "Oui, monsieur.")]
    broken = write(tmp_path, "broken.tsv", "Go.\tVe.\nonly a source\n")
    with pytest.raises(ValueError, match=located(broken, 2) + " 1 column.*`target_column` needs at least 2"):
        read_pairs(broken)
    with pytest.raises(ValueError, match="`source_column`=0 and `target_column`=-2 are the same column"):
        read_pairs(broken, target_column=-2)


# ---------------------------------------------------------------------------------------------
# read_conll


IOB1_SNIPPET = """\
-DOCSTART- -X- O O

Anna NNP I-NP I-PER
Lee NNP I-NP I-PER
visits VBZ I-VP O
Berlin NNP I-NP I-LOC
Paris NNP I-NP B-LOC
. . O O

EU NNP I-NP I-ORG
talks NNS I-NP O


-DOCSTART- -X- O O

Peter NNP I-NP B-PER
Blackburn NNP I-NP I-PER
German JJ I-NP I-MISC
"""


def test_read_conll_converts_iob1_and_skips_docstart(tmp_path):
    path = write(tmp_path, "eng.snippet", IOB1_SNIPPET)
    dataset = read_conll(path, scheme="iob1")
    assert dataset.element_spec == (tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string))
    expected = [
        (["Anna", "Lee", "visits", "Berlin", "Paris", "."], ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "O"]),
        (["EU", "talks"], ["B-ORG", "O"]),
        (["Peter", "Blackburn", "German"], ["B-PER", "I-PER", "B-MISC"]),
    ]
    assert values(dataset) == expected
    assert values(read_conll(path)) == expected  # "auto" converts the same way
    assert parse_conll(path) == expected
    # The POS column, read as the tags, is not IOB: the error names the line.
    with pytest.raises(ValueError, match=located(path, 3) + " invalid tag 'NNP'"):
        read_conll(path, tag_column=1)
    chunks = values(read_conll(path, token_column=1, tag_column=2))
    assert chunks[0] == (["NNP", "NNP", "VBZ", "NNP", "NNP", "."], ["B-NP", "I-NP", "B-VP", "B-NP", "I-NP", "O"])
    batch = next(iter(dataset.padded_batch(3, padding_values=("", "O"))))
    assert batch[0].shape == (3, 6) and batch[1].numpy()[1].tolist() == [b"B-ORG", b"O", b"O", b"O", b"O", b"O"]


def test_read_conll_iob2_is_kept_and_checked(tmp_path):
    # WNUT-17 layout: token<TAB>tag, a whitespace-only line between sentences, hyphenated types.
    path = write(tmp_path, "wnut.conll", "Stuck\tO\nin\tO\nLos\tB-location\nAngeles\tI-location\n\t\n"
                                         "#ff\tO\nStar\tB-creative-work\nWars\tI-creative-work\nfans\tO\n\n")
    expected = [(["Stuck", "in", "Los", "Angeles"], ["O", "O", "B-location", "I-location"]),
                (["#ff", "Star", "Wars", "fans"], ["O", "B-creative-work", "I-creative-work", "O"])]
    for scheme in ("iob2", "auto", "iob1"):
        assert values(read_conll(path, scheme=scheme)) == expected
    assert values(read_conll(path, scheme="iob2", delimiter="\t")) == expected
    assert conll_tags(path) == ["B-creative-work", "B-location", "I-creative-work", "I-location", "O"]
    iob1 = write(tmp_path, "iob1.conll", "Anna\tI-PER\nLee\tI-PER\n")
    with pytest.raises(ValueError, match=located(iob1, 1) + " tag 'I-PER' starts an entity.*scheme='iob1'"):
        read_conll(iob1, scheme="iob2")
    type_change = write(tmp_path, "change.conll", "Anna\tB-PER\nBerlin\tI-LOC\n")
    with pytest.raises(ValueError, match=located(type_change, 2) + " tag 'I-LOC' starts an entity"):
        read_conll(type_change, scheme="iob2")
    with pytest.raises(ValueError, match="`scheme` must be one of 'auto', 'iob1', 'iob2', got 'bio'"):
        read_conll(path, scheme="bio")


def test_conll_tags_lists_both_prefixes_of_every_type(tmp_path):
    first = write(tmp_path, "a.conll", IOB1_SNIPPET)
    second = write(tmp_path, "b.conll", "Acme\tB-corp\n")
    assert conll_tags(first) == ["B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"]
    assert conll_tags([first, second])[:2] == ["B-LOC", "B-MISC"]
    assert "I-corp" in conll_tags([first, second]) and "O" in conll_tags(second)


@pytest.mark.parametrize("line, message", [
    ("Berlin NNP I-NP X-LOC", "invalid tag 'X-LOC'"),
    ("Berlin NNP I-NP I", "invalid tag 'I'"),
    ("Berlin NNP I-NP B-", "invalid tag 'B-'"),
    ("Berlin NNP I-LOC", r"3 column\(s\), but the first token line \(line 3\) has 4"),
    ("Berlin NNP I-NP I-LOC extra", r"5 column\(s\), but the first token line \(line 3\) has 4"),
])
def test_read_conll_malformed_line_names_file_and_line(tmp_path, line, message):
    path = write(tmp_path, "bad.conll", f"-DOCSTART- -X- O\n\nAnna NNP I-NP I-PER\n\nin IN I-PP O\n{line}\n")
    with pytest.raises(ValueError, match=located(path, 6) + " " + message):
        read_conll(path)


def test_read_conll_files_without_sentences_and_bad_columns(tmp_path):
    empty = write(tmp_path, "empty.conll", "")
    with pytest.raises(ValueError, match=located(empty, 1) + " the file is empty"):
        read_conll(empty)
    docstart = write(tmp_path, "docstart.conll", "-DOCSTART- -X- O O\n\n\n")
    with pytest.raises(ValueError, match=located(docstart, 3) + " reached the end.*without a sentence"):
        read_conll(docstart)
    path = write(tmp_path, "two.conll", "\nAnna B-PER\n")
    with pytest.raises(ValueError, match=located(path, 2) + r" `tag_column`=3 is outside the 2 column\(s\)"):
        read_conll(path, tag_column=3)
    one = write(tmp_path, "one.conll", "Anna\n")
    with pytest.raises(ValueError, match=located(one, 1) + " `token_column`=0 and `tag_column`=-1 are the same"):
        read_conll(one)
    tabs = write(tmp_path, "tabs.conll", "x\tO\n\tB-PER\n")
    with pytest.raises(ValueError, match=located(tabs, 2) + " empty token"):
        read_conll(tabs, delimiter="\t")


# ---------------------------------------------------------------------------------------------
# The real datasets (slow; skipped where /work/shared/data is absent)


def shared(*parts):
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} is absent")
    return path


@pytest.mark.slow
def test_real_datasets_read_with_their_published_counts():
    sst2 = read_labeled(shared("sst2", "dev.tsv"), "sentence", "label")
    assert sst2.cardinality() == 872
    assert values(sst2.take(1)) == [("it 's a charming and often affecting journey . ", 1)]
    multi30k = read_pairs(shared("multi30k", "val.de.gz"), shared("multi30k", "val.en.gz"))
    assert multi30k.cardinality() == 1014
    assert values(multi30k.take(1))[0][1] == "A group of men are loading cotton onto a truck"
    for parts, sentences, tokens, entities in [(("conll2003", "eng.testa"), 3250, 51362, 5942),
                                               (("wnut17", "emerging.dev.conll"), 1009, 15733, 836)]:
        parsed = parse_conll(shared(*parts))
        assert len(parsed) == sentences
        assert sum(len(words) for words, _ in parsed) == tokens
        assert sum(tag.startswith("B-") for _, tags in parsed for tag in tags) == entities
    assert conll_tags(shared("conll2003", "eng.testa")) == [
        "B-LOC", "B-MISC", "B-ORG", "B-PER", "I-LOC", "I-MISC", "I-ORG", "I-PER", "O"]
    assert len(conll_tags(shared("wnut17", "emerging.dev.conll"), scheme="iob2")) == 13
