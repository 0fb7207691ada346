"""Character-level GPT on tiny Shakespeare, nanoGPT's CPU configuration, from scratch.

nanoGPT (README): ``python train.py config/train_shakespeare_char.py --device=cpu --compile=False
--eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 --n_head=4
--n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0`` "gets us a loss of only 1.88".
The same here: 4 layers, 4 heads, width 128, context 64, batch 12, 2000 steps, dropout 0, AdamW
lr 1e-3 (100 warm-up steps, cosine decay to 1e-4), beta2 0.99, weight decay 0.1, gradient
clipping 1.0; nanoGPT's split (first 90 % of the characters train, last 10 % validate).
The one architectural difference is the default ``--position-encoding rotary`` (RoPE in every
attention layer instead of a learned position table): with GPT-2's learned positions
(``--position-encoding learned``, nanoGPT's architecture) the same training reaches 1.877.

The reported number is the mean cross-entropy (nats) over the *whole* validation split, in
non-overlapping 64-character windows; nanoGPT's own estimate (the mean over 20 random batches)
is reported beside it.

    python benchmarks/anchors/char_gpt.py ../shared/data/tinyshakespeare
    python benchmarks/anchors/char_gpt.py --smoke --output-dir /tmp/out
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runner  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transformers.models import CausalLM  # noqa: E402
from keras_transformers.quickstart import (  # noqa: E402
    CharacterVocabulary,
    language_model_windows,
    quickstart_config,
)

TASK = "char_gpt"
ANCHOR = {"value": 1.88, "metric": "val loss (nats/char)",
          "source": "karpathy/nanoGPT README, CPU run of config/train_shakespeare_char.py at 4 layers, "
                    "4 heads, n_embd 128, block 64, batch 12, 2000 iters, dropout 0"}


def options(parser):
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--steps-per-epoch", type=int, default=250)
    parser.add_argument("--clip", choices=("global", "per_variable"), default="global",
                        help="gradient clipping at 1.0 over all gradients together (nanoGPT's "
                             "clip_grad_norm_), or per variable (Keras' clipnorm)")
    parser.add_argument("--decay-all", action="store_true",
                        help="weight decay on every variable (nanoGPT: matrices and embeddings only)")
    parser.add_argument("--position-encoding", default="rotary", choices=("learned", "rotary"),
                        help="rotary (RoPE, the default) or learned absolute positions (GPT-2, nanoGPT)")


def full_split_loss(model, ids, context, batch_size=256):
    """Mean next-character cross-entropy over all non-overlapping windows of ``ids``."""
    count = (len(ids) - 1) // context
    inputs = ids[:count * context].reshape(count, context)
    labels = ids[1:count * context + 1].reshape(count, context)
    x = {"token_ids": inputs, "padding_mask": np.ones_like(inputs)}
    return float(model.evaluate(x, labels, batch_size=batch_size, verbose=0, return_dict=True)["loss"])


def main(argv=None):
    started = time.perf_counter()
    args = runner.arguments(TASK, __doc__.split("\n")[0], "tinyshakespeare", argv, options)
    path = args.data_dir if args.data_dir.endswith(".txt") else os.path.join(args.data_dir, "input.txt")
    with open(path, encoding="utf-8") as file:
        text = file.read()
    batch_size, context, peak_lr, min_lr, warmup = 12, 64, 1e-3, 1e-4, 100
    steps, steps_per_epoch, eval_batches = args.steps, args.steps_per_epoch, 20
    if args.smoke:
        text, steps, steps_per_epoch, warmup, eval_batches = text[:20000], 20, 10, 2, 2
    vocabulary = CharacterVocabulary(text)
    ids = vocabulary.encode(text)
    split = int(len(ids) * 0.9)  # nanoGPT's split
    train = language_model_windows(ids[:split], context, batch_size, args.seed)
    validation = language_model_windows(ids[split:], context, batch_size, args.seed + 1)

    config = quickstart_config(len(vocabulary), context).replace(position_encoding=args.position_encoding)
    model = CausalLM(config)
    schedule = keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=steps - warmup, warmup_target=peak_lr, warmup_steps=warmup,
        alpha=min_lr / peak_lr)
    clip = {"global_clipnorm": 1.0} if args.clip == "global" else {"clipnorm": 1.0}
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.1, beta_1=0.9, beta_2=0.99, **clip)
    if not args.decay_all:  # nanoGPT decays 2-D parameters only: not biases, not norm scales/shifts
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=optimizer)
    model.build(None)
    epochs = args.epochs or -(-steps // steps_per_epoch)
    runner.log(TASK, f"{model.count_params():,} parameters; {epochs} epochs x {steps_per_epoch} steps")

    rows, training_wall = runner.fit(model, train, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                     work_dir=args.work_dir, validation_data=validation,
                                     validation_steps=eval_batches)
    validation_ids = ids[split:]
    val_loss = full_split_loss(model, validation_ids, context)
    nanogpt_estimate = float(model.evaluate(validation, steps=eval_batches, verbose=0,
                                            return_dict=True)["loss"])
    train_estimate = float(model.evaluate(train, steps=eval_batches, verbose=0, return_dict=True)["loss"])

    runner.plot_curves(rows, runner.output_path(args, "_curves.png"),
                       "char-level GPT, tiny Shakespeare (loss in nats/char)", metrics=["loss"])
    sample = validation_ids[:context]
    weights = runner.self_attention_weights(
        model.backbone, {"token_ids": sample[None, :], "padding_mask": np.ones((1, context), np.int32)})
    characters = [repr(c)[1:-1] or " " for c in vocabulary.decode(sample)]
    runner.plot_attention(weights[0], characters, characters, runner.output_path(args, "_attention.png"),
                          "causal self-attention, last block, a validation window")

    return runner.write_result(
        args, metric="val_loss", value=val_loss, anchor=ANCHOR, target={"op": "<=", "value": 1.85},
        config={**config.to_dict(), "batch_size": batch_size, "context": context,
                "optimizer": f"AdamW(lr {peak_lr}, 100-step linear warm-up, cosine to {min_lr}, "
                             f"beta2 0.99, weight_decay 0.1 "
                             f"{'on all variables' if args.decay_all else 'not on biases/norms'}, "
                             f"{args.clip} clip 1.0)",
                "parameters": model.count_params()},
        steps=int(model.optimizer.iterations), training_wall_s=training_wall,
        total_wall_s=time.perf_counter() - started,
        extra={"val_loss_definition": "mean cross-entropy over all non-overlapping 64-char windows "
                                      f"of the last 10% ({len(validation_ids):,} chars)",
               "val_loss_nanogpt_estimate": nanogpt_estimate,
               "train_loss_estimate": train_estimate,
               "estimate_definition": f"mean over {eval_batches} random batches of 12x64 (nanoGPT's "
                                      "--eval_iters=20)",
               "epochs": rows})


if __name__ == "__main__":
    main()
