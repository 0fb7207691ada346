"""Reading the stored reference numbers (``make_*reference.py``) the parity tests compare with."""


def seq2seq_inputs(reference):
    """A Seq2Seq reference's ``source_ids``/``source_mask``/``target_ids``/``target_mask`` as the
    four model inputs (int32 NumPy arrays)."""
    return {"encoder_token_ids": reference["source_ids"], "encoder_padding_mask": reference["source_mask"],
            "decoder_token_ids": reference["target_ids"], "decoder_padding_mask": reference["target_mask"]}
