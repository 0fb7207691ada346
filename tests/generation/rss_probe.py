"""Memory and compile count of ``CausalLM.generate`` over calls of random shapes (issue 14, item 2).

Run as a script (``python tests/generation/rss_probe.py [calls] [warmup]``): a tiny model
(``max_length=128``), first ``warmup`` calls that between them reach every bucket the random
calls can (batch 1-32, prompts 1-63 tokens, ``max_new_tokens`` 1-63), then ``calls`` calls
of random shapes; prints one JSON line: RSS (``VmRSS`` of ``/proc/self/status``) before and
after, traces, distinct programs, and the median seconds per call of each phase.
``tests/generation/test_robustness.py`` runs it in a subprocess (marked ``slow``).
"""

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from keras_transformers import CausalLM, TransformerConfig  # noqa: E402
from keras_transformers.generation import cache_info  # noqa: E402


def rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def random_call(lm, rng):
    batch, length, new = rng.integers(1, 33), rng.integers(1, 64), rng.integers(1, 64)
    lm.generate(rng.integers(1, 64, (batch, length)).tolist(), max_new_tokens=int(new))


def main(calls=200, warmup=True):
    keras.utils.set_random_seed(0)
    lm = CausalLM(TransformerConfig.from_preset("tiny", norm_first=True, max_length=128))
    start = rss_mb()
    warm_times = []
    if warmup:  # every bucket: batch 1..32 (6 buckets) x width 16..128 (4 buckets)
        for batch in (1, 2, 4, 8, 16, 32):
            for width in (16, 32, 64, 128):
                t = time.perf_counter()
                lm.generate([[1] * (width // 2)] * batch, max_new_tokens=width // 2 - 1 if width > 16 else 7)
                warm_times.append(time.perf_counter() - t)
    warm = rss_mb()
    warm_info = cache_info(lm)
    rng = np.random.default_rng(0)
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        random_call(lm, rng)
        times.append(time.perf_counter() - t)
    result = {"rss_start_mb": round(start), "rss_after_warmup_mb": round(warm), "rss_end_mb": round(rss_mb()),
              "calls": calls, "warmup": warm_info, "end": cache_info(lm),
              "warmup_median_s": float(np.median(warm_times)) if warm_times else None,
              "call_median_s": float(np.median(times)) if times else None}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200, (sys.argv[2] != "0") if len(sys.argv) > 2 else True)
