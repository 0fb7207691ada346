"""DPO makes a from-scratch SST-2 language model write positive text (issue 18, item 3).

The classic "make GPT write positive reviews", all from scratch on SST-2, in five stages:

1. **LM**: a small :class:`~keras_transformers.CausalLM` (lower-cased WordPiece learned on the
   training phrases, :class:`~keras_transformers.preprocessing.CausalLMPreprocessor`) trained on
   SST-2's training phrases of 4 words or more.
2. **Judges**: two sentiment classifiers, the recipe of ``benchmarks/anchors/sst2.py`` (a 2-layer
   pre-norm encoder, max pooling, word dropout, label smoothing, EMA) in a compact form on the
   same vocabulary: judge 1 (seed 0) labels the training pairs; judge 2 (seed 1, so another
   initialisation *and* another shuffling of the data) is used only for the evaluation, so the
   policy cannot be scored by the judge it was trained to please.
3. **Pairs**: prompts are the first 2-4 words of training phrases; the LM samples two
   continuations of each (compiled ``generate``, temperature 1, top-k); judge 1 scores
   ``prompt + continuation``; the more positive is ``chosen``. Pairs whose two scores differ by
   less than ``--min-gap`` are dropped (near-ties carry no preference).
4. **DPO**: :class:`~keras_transformers.training.dpo.DPO` (β 0.1, frozen copy as the reference)
   on the ids (:func:`~keras_transformers.training.preferences.pack_preferences`), with
   ``compile()`` / ``fit()``; its metrics (reward accuracy and margin, log-probs, exact KL)
   are logged several times per pass over the pairs.
5. **Evaluation** on prompts from the first 2-4 words of the **dev** sentences, several samples
   per prompt with the same settings and seeds for the reference and the policy:

   * ``positive_share``: the share of ``prompt + continuation`` that judge 2 calls positive
     (p > 0.5), before (reference) and after (policy); judge 1's share beside it, and judge 2
     on the continuation alone;
   * ``kl_per_token``: on the policy's samples, the mean over generated tokens of
     ``log π(y_t) - log π_ref(y_t)`` (a Monte-Carlo estimate; the tokens are drawn from the
     top-k-truncated policy, the log-probs are the full softmax's), and the exact per-token
     ``Σ_v π(v)·(log π(v) - log π_ref(v))`` at the same positions;
   * ``perplexity_under_reference``: ``exp(-mean log π_ref)`` over the generated tokens of
     the policy's samples, against the same for the reference's own samples (fluency);
   * a few samples before / after.

Every stage is saved in the work directory as soon as it is done (vocabulary, ``lm.keras``,
``judge_1.keras``, ``judge_2.keras``, ``pairs.npz``, ``policy.keras``, ``evaluation.json``) and
the three training stages resume per epoch (``keras.callbacks.BackupAndRestore``), so a rerun
continues where a cut-off run stopped and a rerun of a finished run only writes the result.

    python benchmarks/alignment_sentiment.py ../shared/data/sst2
    python benchmarks/alignment_sentiment.py --smoke --output-dir /tmp/out     # 1-2 minutes

The full run takes about 25 minutes on 2 busy CPU cores; benchmarks/README.md has its numbers.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "anchors"))
import runner  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_transformers.data import read_labeled  # noqa: E402
from keras_transformers.models import CausalLM, EncoderClassifier, TransformerConfig  # noqa: E402
from keras_transformers.models.losses import SparseCategoricalCrossentropy  # noqa: E402
from keras_transformers.preprocessing import CausalLMPreprocessor, TextPreprocessor  # noqa: E402
from keras_transformers.tokenizers import train_wordpiece, wordpiece_tokenizer  # noqa: E402
from keras_transformers.training.dpo import DPO  # noqa: E402
from keras_transformers.training.preferences import completion_log_probs, pack_completions  # noqa: E402
from keras_transformers.training.preferences import pack_preferences  # noqa: E402

TASK = "alignment_sentiment"
LM_LENGTH = 32       # the LM's context: a 2-4 word prompt plus the new tokens fit well inside
JUDGE_LENGTH = 64    # the judges' (the SST-2 recipe's)
DPO_METRICS = ["loss", "reward_accuracy", "reward_margin", "chosen_log_prob", "rejected_log_prob", "kl"]


def options(parser):
    parser.add_argument("--vocabulary-size", type=int, default=6000)
    parser.add_argument("--lm-hidden-size", type=int, default=192)
    parser.add_argument("--lm-layers", type=int, default=3)
    parser.add_argument("--lm-epochs", type=int, default=2)
    parser.add_argument("--judge-epochs", type=int, default=1,
                        help="the SST-2 anchor trains 2 (83.0 on dev); 1 reaches 79")
    parser.add_argument("--pair-prompts", type=int, default=3000, help="training prompts sampled for pairs")
    parser.add_argument("--min-gap", type=float, default=0.1,
                        help="drop pairs whose judge-1 positive probabilities differ by less")
    parser.add_argument("--new-tokens", type=int, default=14)
    parser.add_argument("--top-k", type=int, default=40)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--dpo-learning-rate", type=float, default=2e-4)
    parser.add_argument("--dpo-epochs", type=int, default=2, help="passes over the pairs")
    parser.add_argument("--dpo-logs-per-epoch", type=int, default=4,
                        help="metric rows (and checkpoints) per pass")
    parser.add_argument("--eval-samples", type=int, default=4, help="samples per dev prompt")


def log(message):
    runner.log(TASK, message)


def read(path):
    pairs = read_labeled(path, "sentence", "label").as_numpy_iterator()
    return [(text.decode().strip(), int(label)) for text, label in pairs]


def first_words(texts, rng):
    """The first 2-4 words (as many as leave at least two words to continue) of each text."""
    prompts = []
    for text in texts:
        words = text.split()
        prompts.append(" ".join(words[:min(int(rng.integers(2, 5)), len(words) - 2)]))
    return prompts


# --- stage 1: the language model -----------------------------------------------------------------
def train_lm(args, texts, preprocessor, vocabulary_size):
    path = os.path.join(args.work_dir, "lm.keras")
    if os.path.exists(path):
        return keras.saving.load_model(path)
    started = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    config = TransformerConfig(
        vocab_size=vocabulary_size, hidden_size=args.lm_hidden_size, num_layers=args.lm_layers,
        num_heads=4, intermediate_size=4 * args.lm_hidden_size, activation="gelu", norm_first=True,
        norm_epsilon=1e-5, max_length=LM_LENGTH, dropout=0.1, attention_dropout=0.0,
        position_encoding="rotary", tie_embeddings=True)
    model = CausalLM(config, preprocessor=preprocessor)
    batch_size = 64

    def pack(text):  # (smoke: one padded shape, so the step compiles once)
        inputs, labels = preprocessor(text)
        multiple = LM_LENGTH if args.smoke else 8
        return runner.trim_padding((inputs, labels), inputs["padding_mask"], multiple=multiple)

    data = (tf.data.Dataset.from_tensor_slices(texts).shuffle(len(texts), seed=args.seed)
            .batch(batch_size, drop_remainder=True).map(pack).repeat().prefetch(tf.data.AUTOTUNE))
    steps_per_epoch = len(texts) // batch_size
    total = args.lm_epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(0.0, total - total // 20, alpha=0.1,
                                                      warmup_target=1e-3, warmup_steps=total // 20)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.1, beta_2=0.99, global_clipnorm=1.0)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model.compile(optimizer=optimizer)
    model.build(None)
    log(f"LM: {model.count_params():,} parameters; {args.lm_epochs} epochs x {steps_per_epoch} steps")
    rows, training_wall = runner.fit(model, data, epochs=args.lm_epochs, steps_per_epoch=steps_per_epoch,
                                     work_dir=stage_dir(args, "lm"))
    model.save(path)
    record(args, "lm", time.perf_counter() - started, training_wall_s=round(training_wall, 1),
           steps=int(optimizer.iterations), epochs=rows)
    return model


# --- stage 2: the judges (the SST-2 recipe of benchmarks/anchors/sst2.py, compactly) -------------
def train_judge(args, name, seed, examples, dev, vocabulary):
    path = os.path.join(args.work_dir, f"{name}.keras")
    if os.path.exists(path):
        return keras.saving.load_model(path)
    started = time.perf_counter()
    keras.utils.set_random_seed(seed)
    texts, labels = map(list, zip(*examples))
    preprocessor = TextPreprocessor(wordpiece_tokenizer(vocabulary), JUDGE_LENGTH,
                                    start_id=vocabulary.index("[CLS]"), separator_id=vocabulary.index("[SEP]"))
    hidden = 64 if args.smoke else 128
    config = TransformerConfig(
        vocab_size=len(vocabulary), hidden_size=hidden, num_layers=1 if args.smoke else 2, num_heads=4,
        intermediate_size=2 * hidden, activation="gelu", norm_first=True, norm_epsilon=1e-5,
        embedding_norm=False, max_length=JUDGE_LENGTH, dropout=0.3, attention_dropout=0.1,
        position_encoding="rotary")
    mask_id = vocabulary.index("[MASK]")
    special = tf.constant([vocabulary.index(t) for t in ("[PAD]", "[CLS]", "[SEP]")])

    def pack(text, label, training):
        inputs = preprocessor(text)
        if training:  # word dropout 0.1: ordinary pieces replaced by [MASK]
            ids = inputs["token_ids"]
            dropped = tf.reduce_all(ids[..., None] != special, -1) & (tf.random.uniform(tf.shape(ids)) < 0.1)
            inputs = {**inputs, "token_ids": tf.where(dropped, mask_id, ids)}
        multiple = JUDGE_LENGTH if args.smoke else 16  # (smoke: one shape, one compilation)
        return runner.trim_padding(inputs, inputs["padding_mask"], multiple=multiple), label

    batch_size = 16 if args.smoke else 64
    train = (tf.data.Dataset.from_tensor_slices((texts, np.array(labels, np.int32)))
             .shuffle(len(texts), seed=seed).group_by_window(  # batches of similar lengths
                 lambda t, _: tf.cast(tf.minimum(tf.size(tf.strings.split(t)) // 8, 4), tf.int64),
                 lambda _, rows: rows.batch(batch_size, drop_remainder=True), window_size=batch_size)
             .map(lambda t, y: pack(t, y, True)).repeat().prefetch(tf.data.AUTOTUNE))
    dev_texts, dev_labels = map(list, zip(*dev))
    validation = (tf.data.Dataset.from_tensor_slices((dev_texts, np.array(dev_labels, np.int32))).batch(256)
                  .map(lambda t, y: pack(t, y, False)))
    steps_per_epoch = len(texts) // batch_size
    total = args.judge_epochs * steps_per_epoch
    schedule = keras.optimizers.schedules.CosineDecay(0.0, total - max(1, total // 20), alpha=0.05,
                                                      warmup_target=1e-3, warmup_steps=max(1, total // 20))
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=0.05, global_clipnorm=1.0, use_ema=True,
                                       ema_momentum=0.99 if args.smoke else 0.999)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    model = EncoderClassifier(config, num_classes=2, pooling="max", dropout=0.3,
                              label_names=["negative", "positive"], preprocessor=preprocessor)
    model.compile(optimizer=optimizer, loss=SparseCategoricalCrossentropy(0.1))
    model.build(None)
    log(f"{name} (seed {seed}): {model.count_params():,} parameters; {args.judge_epochs} epochs x "
        f"{steps_per_epoch} steps")
    _, training_wall = runner.fit(model, train, epochs=args.judge_epochs, steps_per_epoch=steps_per_epoch,
                                  work_dir=stage_dir(args, name), validation_data=validation)
    # fit ends by swapping in the EMA weights: they are the judge (as the SST-2 anchor scores them).
    accuracy = float(model.evaluate(validation, verbose=0, return_dict=True)["accuracy"])
    model.save(path)
    record(args, name, time.perf_counter() - started, training_wall_s=round(training_wall, 1), seed=seed,
           dev_accuracy=accuracy,
           steps=int(optimizer.iterations))
    log(f"{name}: dev accuracy {100 * accuracy:.2f}")
    return model


def positive_probability(judge, texts):
    return judge.predict_labels(list(texts), batch_size=256)["probabilities"][:, 1]


# --- sampling ------------------------------------------------------------------------------------
def prompt_ids(lm, prompts, args):
    """``[start] + tokens`` of each prompt, cut to leave room for ``--new-tokens``."""
    return [ids[:LM_LENGTH - args.new_tokens] for ids in lm.preprocessor.prompt_ids(prompts)]


def sample(lm, prompt_ids, args, seed, batch_size=512):
    """One continuation of each prompt: ``(completions, texts)``, the new ids (the end id kept
    when generated) and the text of prompt and continuation (without the start and end ids),
    which the judges score."""
    end = lm.preprocessor.end_id
    completions = []
    for start in range(0, len(prompt_ids), batch_size):
        batch = prompt_ids[start:start + batch_size]
        out = lm.generate(batch, args.new_tokens, temperature=args.temperature, top_k=args.top_k,
                          stop_token_ids=[end], seed=seed + start)
        for row, mask, prompt in zip(out["token_ids"], out["padding_mask"], batch):
            completions.append(row[mask][len(prompt):].tolist())
    texts = lm.preprocessor.detokenize([p[1:] + (c[:-1] if c and c[-1] == end else c)
                                        for p, c in zip(prompt_ids, completions)])
    return completions, [str(t) for t in texts]


# --- stage 3: the preference pairs ---------------------------------------------------------------
def make_pairs(args, lm, judge, prompts):
    path = os.path.join(args.work_dir, "pairs.npz")
    if os.path.exists(path):
        saved = np.load(path, allow_pickle=False)
        return {key: saved[key] for key in saved.files if key != "summary"}, json.loads(str(saved["summary"]))
    started = time.perf_counter()
    ids = prompt_ids(lm, prompts, args)
    (first, first_texts), (second, second_texts) = (sample(lm, ids, args, seed) for seed in (10_000, 20_000))
    scores = [positive_probability(judge, t) for t in (first_texts, second_texts)]
    keep = np.abs(scores[0] - scores[1]) >= args.min_gap
    first_wins = scores[0] >= scores[1]
    chosen = [a if w else b for a, b, w, k in zip(first, second, first_wins, keep) if k]
    rejected = [b if w else a for a, b, w, k in zip(first, second, first_wins, keep) if k]
    kept_prompts = [p for p, k in zip(ids, keep) if k]
    packed = pack_preferences(kept_prompts, chosen, rejected, LM_LENGTH, lm.preprocessor.pad_id)
    chosen_score = np.maximum(*scores)[keep]
    rejected_score = np.minimum(*scores)[keep]
    summary = {"prompts": len(prompts), "pairs": int(keep.sum()), "min_gap": args.min_gap,
               "judge_1_positive_share_of_samples": float(np.mean(np.concatenate(scores) > 0.5)),
               "mean_chosen_p_positive": float(chosen_score.mean()),
               "mean_rejected_p_positive": float(rejected_score.mean()),
               "wall_s": round(time.perf_counter() - started, 1),
               "examples": [{"prompt": prompts[i], "a": first_texts[i], "b": second_texts[i],
                             "p_positive_a": float(scores[0][i]), "p_positive_b": float(scores[1][i])}
                            for i in range(3)]}
    np.savez(path, **packed, summary=json.dumps(summary))
    record(args, "pairs", summary["wall_s"])
    log(f"pairs: {summary['pairs']} of {len(prompts)} prompts kept (gap >= {args.min_gap}); "
        f"{summary['wall_s']} s")
    return packed, summary


# --- stage 4: DPO --------------------------------------------------------------------------------
def train_dpo(args, packed):
    path = os.path.join(args.work_dir, "policy.keras")
    if os.path.exists(path):
        return keras.saving.load_model(path)
    started = time.perf_counter()
    keras.utils.set_random_seed(args.seed)
    policy = keras.saving.load_model(os.path.join(args.work_dir, "lm.keras"))  # the copy to tune
    dpo = DPO(policy, beta=args.beta)  # the reference: a frozen copy of the LM
    batch_size = 16 if args.smoke else 32
    count = len(packed["chosen_token_ids"])
    data = (tf.data.Dataset.from_tensor_slices(packed).shuffle(count, seed=args.seed)
            .batch(batch_size, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE))
    steps_per_epoch = max(1, count // batch_size // args.dpo_logs_per_epoch)
    epochs = args.dpo_epochs * args.dpo_logs_per_epoch
    dpo.compile(optimizer=keras.optimizers.Adam(args.dpo_learning_rate, global_clipnorm=1.0))
    log(f"DPO: {count} pairs, {epochs} logs x {steps_per_epoch} steps of {batch_size} pairs")
    rows, training_wall = runner.fit(dpo, data, epochs=epochs, steps_per_epoch=steps_per_epoch,
                                     work_dir=stage_dir(args, "dpo"))
    policy.save(path)
    record(args, "dpo", time.perf_counter() - started, training_wall_s=round(training_wall, 1),
           steps=int(dpo.optimizer.iterations), pairs=count, batch_size=batch_size, epochs=rows)
    return policy


# --- stage 5: evaluation -------------------------------------------------------------------------
def token_log_probs(model, reference, prompt_ids, completions, batch_size=256):
    """Over all generated tokens: ``(Σ log π, Σ log π_ref, Σ exact KL, count)`` (π = ``model``)."""
    packed = pack_completions(prompt_ids, completions, LM_LENGTH)

    @tf.function
    def sums(ids, padding, completion):
        summed, log_probs, counted = completion_log_probs(model, ids, padding, completion)
        summed_ref, log_probs_ref, _ = completion_log_probs(reference, ids, padding, completion)
        kl = tf.reduce_sum(tf.exp(log_probs) * (log_probs - log_probs_ref), axis=-1)
        return (tf.reduce_sum(summed), tf.reduce_sum(summed_ref), tf.reduce_sum(kl * counted),
                tf.reduce_sum(counted))

    totals = np.zeros(4)
    for start in range(0, len(completions), batch_size):
        part = [packed[k][start:start + batch_size] for k in ("token_ids", "padding_mask", "completion_mask")]
        totals += [float(v) for v in sums(*part)]
    return totals


def evaluate(args, reference, policy, judges, prompts):
    path = os.path.join(args.work_dir, "evaluation.json")
    if os.path.exists(path):
        with open(path) as file:
            return json.load(file)
    started = time.perf_counter()
    ids = prompt_ids(reference, prompts, args)
    prompt_texts = [str(t) for t in reference.preprocessor.detokenize([p[1:] for p in ids])]
    sides, samples = {}, {}
    for name, model in (("before", reference), ("after", policy)):
        completions, full = [], []
        for k in range(args.eval_samples):  # the same seeds for both models
            c, t = sample(model, ids, args, seed=1_000_000 + 1000 * k)
            completions += c
            full += t
        texts = [t[len(p):].strip() for t, p in zip(full, prompt_texts * args.eval_samples)]
        repeated_prompts = ids * args.eval_samples
        log_pi, log_ref, kl, tokens = token_log_probs(model, reference, repeated_prompts, completions)
        p2 = positive_probability(judges[1], full)
        p1 = positive_probability(judges[0], full)
        p2_alone = positive_probability(judges[1], [t or "." for t in texts])
        sides[name] = {
            "positive_share_judge_2": float(np.mean(p2 > 0.5)),
            "positive_share_judge_1": float(np.mean(p1 > 0.5)),
            "positive_share_judge_2_continuation_only": float(np.mean(p2_alone > 0.5)),
            "mean_p_positive_judge_2": float(p2.mean()),
            "perplexity_under_reference": float(np.exp(-log_ref / tokens)),
            "perplexity_under_itself": float(np.exp(-log_pi / tokens)),
            "kl_per_token_sampled": float((log_pi - log_ref) / tokens),
            "kl_per_token_exact": float(kl / tokens),
            "mean_generated_tokens": float(tokens / len(completions)),
            "distinct_continuations": float(len(set(texts)) / len(texts)),
        }
        samples[name] = [{"text": full[i], "p_positive_judge_2": round(float(p2[i]), 3)} for i in range(8)]
        log(f"{name}: " + ", ".join(f"{k} {v:.3f}" for k, v in sides[name].items()))
    result = {"prompts": len(prompts), "samples_per_prompt": args.eval_samples, "before": sides["before"],
              "after": sides["after"], "samples": samples, "wall_s": round(time.perf_counter() - started, 1)}
    with open(path, "w") as file:
        json.dump(result, file, indent=2)
    record(args, "evaluation", result["wall_s"])
    return result


def record(args, stage, wall_s, **info):
    """Note a finished stage's wall time (and ``info``) in ``<work-dir>/stages.json``: a rerun
    that loads the stage still reports what it cost. ``wall_s`` is the run that finished the
    stage; ``training_wall_s`` (training stages) sums every epoch, across cut-off runs too."""
    stages = recorded(args)
    stages[stage] = {"wall_s": round(wall_s, 1), **info}
    with open(os.path.join(args.work_dir, "stages.json"), "w") as file:
        json.dump(stages, file, indent=2, default=float)


def recorded(args):
    path = os.path.join(args.work_dir, "stages.json")
    if not os.path.exists(path):
        return {}
    with open(path) as file:
        return json.load(file)


def stage_dir(args, name):
    path = os.path.join(args.work_dir, name)
    os.makedirs(path, exist_ok=True)
    return path


def plot(rows, evaluation, path, logs_per_pass):
    plt = runner._pyplot()
    names = ["reward_accuracy", "reward_margin", "kl"]
    figure, axes = plt.subplots(1, len(names) + 1, figsize=(4.2 * (len(names) + 1), 3.4))
    for axis, name in zip(axes, names):
        axis.plot([i + 1 for i in range(len(rows))], [row.get(name) for row in rows], marker="o")
        axis.set_title(f"DPO {name}")
        axis.set_xlabel(f"checkpoint (1/{logs_per_pass} pass over the pairs each)")
        axis.grid(alpha=0.3)
    shares = [evaluation[side]["positive_share_judge_2"] for side in ("before", "after")]
    axes[-1].bar(["reference", "DPO policy"], shares, color=["grey", "tab:green"])
    axes[-1].axhline(0.8, color="k", linestyle="--", linewidth=0.8)
    axes[-1].set_ylim(0, 1)
    axes[-1].set_title("positive share, dev prompts (judge 2)")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def main(argv=None):
    started = time.perf_counter()
    args = runner.arguments(TASK, __doc__.split("\n")[0], "sst2", argv, options)
    train = read(os.path.join(args.data_dir, "train.tsv"))
    dev = read(os.path.join(args.data_dir, "dev.tsv"))
    if args.smoke:
        train, dev = train[:600], dev[:64]
        args.vocabulary_size, args.lm_hidden_size, args.lm_layers = 800, 64, 1
        args.lm_epochs = args.judge_epochs = args.dpo_epochs = args.dpo_logs_per_epoch = 1
        args.pair_prompts, args.eval_samples, args.min_gap = 128, 2, 0.0
    if args.epochs:
        args.lm_epochs = args.judge_epochs = args.dpo_epochs = args.epochs
    rng = np.random.default_rng(args.seed)
    lm_texts = [text for text, _ in train if len(text.split()) >= 4]

    vocabulary_path = os.path.join(args.work_dir, "vocabulary.txt")
    if not os.path.exists(vocabulary_path):
        vocabulary = train_wordpiece(tf.data.Dataset.from_tensor_slices([t for t, _ in train]).batch(1000),
                                     args.vocabulary_size, lowercase=True)
        with open(vocabulary_path, "w") as file:
            file.write("\n".join(vocabulary) + "\n")
    with open(vocabulary_path) as file:
        vocabulary = [line.rstrip("\n") for line in file]
    lm_preprocessor = CausalLMPreprocessor(wordpiece_tokenizer(vocabulary), LM_LENGTH,
                                           start_id=vocabulary.index("[CLS]"), end_id=vocabulary.index("[SEP]"))

    lm = train_lm(args, lm_texts, lm_preprocessor, len(vocabulary))
    judge_1 = train_judge(args, "judge_1", args.seed, train, dev, vocabulary)
    judge_2 = train_judge(args, "judge_2", args.seed + 1, train, dev, vocabulary)
    candidates = [text for text in lm_texts if len(text.split()) >= 6]
    picked = rng.permutation(len(candidates))[:args.pair_prompts]
    packed, pairs = make_pairs(args, lm, judge_1, first_words([candidates[i] for i in picked], rng))
    policy = train_dpo(args, packed)
    dev_prompts = first_words([text for text, _ in dev if len(text.split()) >= 4], rng)
    evaluation = evaluate(args, lm, policy, (judge_1, judge_2), dev_prompts)

    stages = recorded(args)
    plot(stages["dpo"]["epochs"], evaluation, runner.output_path(args, "_curves.png"), args.dpo_logs_per_epoch)
    before, after = evaluation["before"], evaluation["after"]
    log(f"positive share (judge 2): {before['positive_share_judge_2']:.3f} -> "
        f"{after['positive_share_judge_2']:.3f} at per-token KL {after['kl_per_token_sampled']:.3f}")
    return runner.write_result(
        args, metric="positive_share_after", value=after["positive_share_judge_2"],
        anchor={"value": before["positive_share_judge_2"], "metric": "positive share before DPO "
                "(the reference LM, same prompts, sampling and judge)"},
        target={"op": ">=", "value": 0.8},
        config={"lm": lm.config.to_dict(), "lm_parameters": lm.count_params(),
                "judge_parameters": judge_1.count_params(), "vocabulary": len(vocabulary),
                "lm_training_phrases": len(lm_texts), "lm_epochs": args.lm_epochs,
                "judge_epochs": args.judge_epochs, "judge_seeds": [args.seed, args.seed + 1],
                "sampling": {"temperature": args.temperature, "top_k": args.top_k,
                             "max_new_tokens": args.new_tokens},
                "pair_prompts": args.pair_prompts, "min_gap": args.min_gap,
                "dpo": {"beta": args.beta, "learning_rate": args.dpo_learning_rate, "passes": args.dpo_epochs,
                        "optimizer": "Adam, global clip 1.0", "reference": "frozen copy of the LM"}},
        steps=stages["dpo"]["steps"],
        training_wall_s=sum(stages[name]["training_wall_s"] for name in ("lm", "judge_1", "judge_2", "dpo")),
        total_wall_s=sum(max(stage["wall_s"], stage.get("training_wall_s", 0.0)) for stage in stages.values()),
        extra={"stages": stages, "this_run_wall_s": round(time.perf_counter() - started, 1),
               "pairs": pairs, "evaluation": evaluation})


if __name__ == "__main__":
    main()
