"""Rules mrd, mrd_variants, baselines and ground_truth: every forget sample's difficulty on the
target model, by MRD, its variants, the field's scores, and the updates it takes to forget."""
from __future__ import annotations

from ..baselines import cheap_scores, field_scores, sample_characteristics
from ..data.loader import load_study_data
from ..difficulty import retain_level
from ..ground_truth import curves_table, required_updates, subsample
from ..io import write_csv, write_json
from ..models import with_lora
from ..mrd import Estimator, PerturbationScorer, score_loglik, score_mrd
from ..variants import estimator_study
from .common import _encode, _load, setup
from .finetune import _base_model


def _forget_on_model(model_dir: str, data_dir: str, max_length: int, device: str, precision: str):
    model, tokenizer, dev, policy = _load(model_dir, device, precision)
    forget = load_study_data(data_dir).forget
    return model, tokenizer, _encode(tokenizer, forget, max_length), dev, policy


def _scorer(model, tokenizer, encoded, dev, mrd_cfg: dict) -> PerturbationScorer:
    return PerturbationScorer(model, encoded, batch_size=mrd_cfg["batch_size"], pad_id=tokenizer.pad_token_id,
                              device=dev)


def score_forget_set(model_dir: str, data_dir: str, out_csv: str, out_json: str, *, mrd_cfg: dict, max_length: int,
                     device: str, precision: str, threads: int, tau: float = 1.0) -> None:
    """The MRD the weighted samplers use: the configured estimator, perturbation seed mrd.seed,
    through the library's `score_mrd` (the same code as `mrd-unlearning score`)."""
    setup(threads)
    model, tokenizer, encoded, dev, _ = _forget_on_model(model_dir, data_dir, max_length, device, precision)
    settings = {k: v for k, v in mrd_cfg.items() if k != "validation"}
    scores, info = score_mrd(model, tokenizer, encoded, device=dev, tau=tau, **settings)
    write_csv(out_csv, scores)
    write_json(out_json, info)


def mrd_variants(model_dir: str, data_dir: str, drops_csv: str, stability_csv: str, *, mrd_cfg: dict,
                 max_length: int, device: str, precision: str, threads: int) -> None:
    """Every variant of MRD on the same perturbations, and its test-retest stability."""
    setup(threads)
    model, tokenizer, encoded, dev, _ = _forget_on_model(model_dir, data_dir, max_length, device, precision)
    scorer = _scorer(model, tokenizer, encoded, dev, mrd_cfg)
    main = Estimator.from_config(mrd_cfg)
    study = mrd_cfg["validation"]
    drops, stability = estimator_study(
        scorer, main, {v["name"]: main.with_overrides(v) for v in study["variants"]}, seed=mrd_cfg["seed"],
        retest_seed=study["retest_seed"], sigma_grid=mrd_cfg["sigma_grid"], positive_share=mrd_cfg["positive_share"],
        K_grid=study["K_grid"], sigma_sweep=study["sigma_sweep"])
    write_csv(drops_csv, drops)
    write_csv(stability_csv, stability)


def baseline_scores(model_dir: str, data_dir: str, out_csv: str, *, mrd_cfg: dict, model_cfg: dict, seed: int,
                    max_length: int, device: str, precision: str, threads: int, base: str | None = None) -> None:
    """The cheap baselines and the field's scores on the target model (entanglement against the
    retain evaluation samples' centroid; the third-party MRD reading with MRD's seed), and C3's
    sample characteristics, among them the likelihood under the model before fine-tuning
    (`base_loglik`: the replicate's starting point, `seed`; for the tiny model an untrained one)."""
    setup(threads)
    model, tokenizer, encoded, dev, _ = _forget_on_model(model_dir, data_dir, max_length, device, precision)
    data = load_study_data(data_dir)
    retain = _encode(tokenizer, data.retain_eval, max_length)
    cheap = cheap_scores(model, encoded, pad_id=tokenizer.pad_token_id, device=dev)
    field = field_scores(model, encoded, retain, batch_size=mrd_cfg["batch_size"], pad_id=tokenizer.pad_token_id,
                         device=dev, seed=mrd_cfg["seed"], eps=mrd_cfg["eps"])
    traits = sample_characteristics(tokenizer, data.forget, encoded, _encode(tokenizer, data.full, max_length))
    del model
    start, _ = _base_model(model_cfg, base, seed, dev)
    traits["base_loglik"] = score_loglik(start.eval(), encoded, mrd_cfg["batch_size"], tokenizer.pad_token_id, dev)
    write_csv(out_csv, cheap.merge(field, on="sample_id").merge(traits, on="sample_id"))


def ground_truth(model_dir: str, data_dir: str, retain_samples_csv: str, out_csv: str, curves_csv: str, *,
                 optimizer: str, lr: float, max_steps: int, max_length: int, device: str, precision: str,
                 threads: int, seed: int, max_samples: int | None = None, sample_seed: int = 0,
                 reset_copy: str = "device", lora: dict | None = None) -> None:
    """Update counts with the unlearning runs' optimizer, lr and (if any) LoRA adapters, of every
    forget sample or of a seeded subsample of `max_samples` (seeded by the data seed), and each
    sample's likelihood curve on the way (`curves_csv`)."""
    setup(threads, seed)
    model, tokenizer, encoded, dev, policy = _forget_on_model(model_dir, data_dir, max_length, device, precision)
    level = retain_level(retain_samples_csv)
    counts = required_updates(with_lora(model, lora or {}), encoded, level, optimizer=optimizer,
                              lr=lr, max_steps=max_steps, pad_id=tokenizer.pad_token_id, device=dev,
                              desc=f"ground truth ({optimizer}, lr {lr:g})", precision=policy, reset_copy=reset_copy,
                              sample_ids=subsample(len(encoded), max_samples, sample_seed))
    write_csv(curves_csv, curves_table(counts, level))
    write_csv(out_csv, counts.drop(columns="loglik_curve").assign(optimizer=optimizer, lr=lr))
