"""Small public-domain corpora shipped with the package."""

import gzip
from importlib import resources


def tiny_shakespeare():
    """The tiny Shakespeare text (1,115,394 characters, 65 distinct), as one string."""
    data = resources.files(__package__).joinpath("tinyshakespeare.txt.gz").read_bytes()
    return gzip.decompress(data).decode("utf-8")
