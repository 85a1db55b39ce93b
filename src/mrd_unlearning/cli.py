"""`mrd-unlearning`: the library's commands. `score` gives any forget set's MRD on any causal LM
folder, without running the study (the same code as the workflow's MRD rule)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

SCORE_HELP = """\
Score every sample of a forget set with MRD (Memory Removal Difficulty, arXiv:2504.06658) on a
model, and write one row per sample, in file order:

  sample_id      the row's position in the file (0-based)
  mrd            1 / D: larger = harder to unlearn
  drop           D, the mean drop of the sample's log-likelihood under K random weight
                 perturbations of scale sigma (larger = easier)
  loglik         the sample's mean log-likelihood under the unperturbed model
  weight_uniform 1/N, the uniform sampler's probability
  weight_mrd     MRD-weighted sampling's probability, p ~ D^(1/tau) (easy samples first)

Beside it, <out>.json records the sigma used, the share of positive drops (sigma auto picks
the smallest grid value where at least 90% of the drops are positive), K, the seed and the cost.

The data file is JSON Lines, one sample per line: question-answer rows
  {"question": "...", "answer": "..."}   (the answer is scored, after the model's prompt)
or text rows
  {"text": "..."}                         (every token scored, or those after --text-prefix-tokens)
The model is any Hugging Face causal LM folder (config.json, weights, tokenizer); chat models
get their chat template.

example:
  mrd-unlearning score --model results/default/models/rep0/target \\
      --data ../shared/data/tofu/forget01.json --out forget01_mrd.csv --K 32
"""


def _score(args: argparse.Namespace) -> int:
    import torch  # heavy imports only once the arguments are known
    import transformers

    from .data.loader import DataError, PREFIX, numbered_rows
    from .io import write_csv, write_json
    from .models import load_checkpoint, resolve_device, sequence_lengths
    from .mrd import score_mrd
    from .precision import resolve_precision

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    transformers.utils.logging.disable_progress_bar()  # loading bars; scoring keeps its own
    try:
        numbered = list(numbered_rows(args.data, perturbed=False))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not numbered:
        print(f"error: {args.data}: no samples", file=sys.stderr)
        return 2
    for _, row in numbered:
        if "text" in row and "question" not in row:
            row[PREFIX] = args.text_prefix_tokens
    device = resolve_device(args.device)
    model, tokenizer = load_checkpoint(args.model, device, resolve_precision(args.precision, device).weights)
    max_length = args.max_length or getattr(model.config, "max_position_embeddings", None) or 10 ** 9
    try:  # every row checked before any perturbation
        too_long = [f"{args.data}:{line}: {n} tokens" for line, row in numbered
                    for what, n in sequence_lengths(tokenizer, row) if what in ("answer", "text") and n > max_length]
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if too_long:
        print(f"error: {len(too_long)} sample(s) longer than --max-length {max_length}:\n  " + "\n  ".join(too_long[:20]),
              file=sys.stderr)
        return 2
    settings = {"K": args.K, "sigma": args.sigma if args.sigma == "auto" else float(args.sigma), "seed": args.seed,
                "batch_size": args.batch_size, "statistic": args.statistic}
    if args.sigma_grid:
        settings["sigma_grid"] = args.sigma_grid
    scores, info = score_mrd(model, tokenizer, [row for _, row in numbered], max_length=max_length, device=device,
                             tau=args.tau, progress=not args.quiet, **settings)
    out = Path(args.out)
    write_csv(out, scores)
    write_json(out.with_suffix(".json"), {**info, "model": str(args.model), "data": str(args.data),
                                          "device": str(device)})
    print(f"{len(scores)} samples scored: sigma {info['sigma']:g}, positive share {info['positive_share']:.3f}, "
          f"{info['forward_passes']} forward passes, {info['wall_s']:.1f} s -> {out}")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="mrd-unlearning", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="MRD of every sample of a data file on a model",
                                description=SCORE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    score.add_argument("--model", required=True, help="Hugging Face causal LM folder (or hub id, online)")
    score.add_argument("--data", required=True, help="JSON Lines file of QA rows or text rows")
    score.add_argument("--out", required=True, help="CSV to write (and <out>.json beside it)")
    score.add_argument("--K", type=int, default=32, help="random perturbations (default 32)")
    score.add_argument("--sigma", default="auto", help="perturbation scale, or auto (default)")
    score.add_argument("--sigma-grid", type=float, nargs="+", help="grid searched by sigma auto "
                       "(default 0.001 ... 1.0, the study's)")
    score.add_argument("--statistic", choices=["signed", "abs"], default="signed", help="mean drop (signed, the "
                       "paper's) or mean |drop|")
    score.add_argument("--seed", type=int, default=0, help="perturbation seed (default 0)")
    score.add_argument("--tau", type=float, default=1.0, help="temperature of the MRD weights (default 1)")
    score.add_argument("--text-prefix-tokens", type=int, default=0,
                       help="text rows: leading tokens that are context, not scored (default 0)")
    score.add_argument("--max-length", type=int, help="longest sample in tokens (default: the model's)")
    score.add_argument("--batch-size", type=int, default=16, help="samples per forward pass (default 16)")
    score.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto = CUDA when available (default)")
    score.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16-mixed", "bf16"],
                       help="weights' precision policy (default auto: fp32 on a CPU); likelihoods are float64")
    score.add_argument("--threads", type=int, default=max(1, min(8, os.cpu_count() or 1)),
                       help="torch CPU threads")
    score.add_argument("--quiet", action="store_true", help="no progress bars")
    score.set_defaults(run=_score)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
