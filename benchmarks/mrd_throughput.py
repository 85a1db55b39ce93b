"""How much does MRD cost? Scores the same samples three ways, each timed in this process:

- plain: K + 1 unperturbed forward passes over the set (the floor MRD's design aims at);
- mrd: our estimator (one perturbation per k, all samples scored under it in batches);
- naive: one perturbation per (sample, k), the sample scored alone.

The last line printed is JSON with `overhead_ratio` (mrd / plain; target <= 1.2) and
`speedup_vs_naive` (naive / mrd; target >= 10), plus the sizes. Run:

    python benchmarks/mrd_throughput.py [--samples 64] [--K 32] [--threads N] [--device cpu|cuda]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from mrd_unlearning.data.loader import load_study_data
from mrd_unlearning.models import build_model, encode_qa, resolve_device
from mrd_unlearning.mrd import Estimator, PerturbationScorer, perturbation_drops, score_loglik
from mrd_unlearning.stages import build_tokenizer, prepare_data, setup


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--sigma", type=float, default=0.02)
    ap.add_argument("--batch-size", type=int, default=16, help="the study's mrd.batch_size default")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="default: every core")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    setup(args.threads)
    device = resolve_device(args.device)

    with tempfile.TemporaryDirectory() as tmp:
        n_people = max(8, int(np.ceil(args.samples / 8)) * 2)
        prepare_data(f"{tmp}/data", seed=0, data_cfg={
            "source": "synthetic", "forget_percent": 50, "retain_eval_size": 8,
            "synthetic": {"n_people": n_people, "attributes_per_person": 8, "values_per_attribute": 16,
                          "zipf_exponent": 1.1, "n_wrong_answers": 2}})
        build_tokenizer(f"{tmp}/data", f"{tmp}/tok", vocab_size=768)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(f"{tmp}/tok")
        rows = load_study_data(f"{tmp}/data").full[: args.samples]
    encoded = [encode_qa(tokenizer, r["question"], r["answer"], 64) for r in rows]
    model = build_model(tokenizer, seed=0, hidden_size=args.hidden, num_layers=args.layers, num_heads=4,
                        intermediate_size=3 * args.hidden, max_length=64).to(device).eval()
    pad, bs, K = tokenizer.pad_token_id, args.batch_size, args.K

    score_loglik(model, encoded, bs, pad, device)  # warm-up
    plain_s, _ = timed(lambda: [score_loglik(model, encoded, bs, pad, device) for _ in range(K + 1)])  # synchronises:
    # every pass ends with the scores copied to the host

    def ours():
        scorer = PerturbationScorer(model, encoded, batch_size=bs, pad_id=pad, device=device, progress=False)
        return scorer.estimate(Estimator(sigma=args.sigma, K=K), seed=0).drops

    mrd_s, drops = timed(ours)

    def naive():
        out = np.empty((K, len(encoded)))
        for i in range(len(encoded)):
            out[:, i] = perturbation_drops(model, encoded[i:i + 1], K=K, sigma=args.sigma, seed=0,
                                           sigma_mode="absolute", batch_size=1, pad_id=pad, device=device)[1][:, 0]
        return out

    naive_s, naive_drops = timed(naive)
    # the same drops; on a GPU a batch of 1 and a batch of 64 take different kernels (float32 sums in another order)
    max_diff = float(np.abs(drops - naive_drops).max())
    assert max_diff <= (1e-6 if device.type == "cpu" else 1e-4), f"naive and batched drops differ by {max_diff}"
    result = {
        "overhead_ratio": mrd_s / plain_s, "speedup_vs_naive": naive_s / mrd_s,
        "plain_s": plain_s, "mrd_s": mrd_s, "naive_s": naive_s, "max_abs_diff_vs_naive": max_diff,
        "n_samples": len(encoded), "K": K,
        "parameters": sum(p.numel() for p in model.parameters()), "batch_size": bs, "threads": args.threads,
        "device": str(device), "torch": torch.__version__,
    }
    print(f"plain (K+1 passes) {plain_s:.2f} s | mrd {mrd_s:.2f} s | naive {naive_s:.2f} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
