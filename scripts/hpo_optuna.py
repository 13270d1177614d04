#!/usr/bin/env python3
"""Precision-first Optuna sweep over LightGBM settings; exports the top trials as JSON.

Objective: validation precision at the precision-first tau_entry, PR-AUC as a tie
breaker (both on the validation slice; the test slice stays untouched for the card).
``--train-best DIR`` retrains the best trial through train.py's path (export + parity).
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import click
import numpy as np


@click.command()
@click.option("--data", "data_path", default="data/training.parquet", show_default=True,
              type=click.Path(path_type=Path, exists=True))
@click.option("--trials", default=20, show_default=True)
@click.option("--top", default=5, show_default=True, help="trials exported")
@click.option("--out", "out_path", default="data/hpo_top_trials.json", show_default=True,
              type=click.Path(path_type=Path))
@click.option("--seed", default=7, show_default=True)
@click.option("--train-best", type=click.Path(path_type=Path), default=None)
def main(data_path: Path, trials: int, top: int, out_path: Path, seed: int, train_best: Path | None) -> None:
    import lightgbm as lgb
    import optuna

    from tidegate.atomic import atomic_write_json
    from tidegate.features.schema import FEATURE_NAMES
    from tidegate.pipeline.evaluate import choose_thresholds, score_metrics
    from tidegate.pipeline.train import TrainParams, _label_params, load_training, time_split, train_model

    table = load_training(data_path)
    lp = _label_params(table)
    x = np.column_stack([table.column(n).to_numpy().astype(np.float32) for n in FEATURE_NAMES])
    y = table.column("label").to_numpy().astype(np.int64)
    t = table.column("local_ns").to_numpy()
    tr, va, _ = time_split(t, (lp.latency_ms + lp.fill_horizon_ms + lp.markout_ms + lp.sample_ms) * 1_000_000)

    def objective(trial: optuna.Trial) -> float:
        params = {"num_leaves": trial.suggest_int("num_leaves", 7, 63, log=True),
                  "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
                  "min_child_samples": trial.suggest_int("min_child_samples", 20, 400, log=True),
                  "n_estimators": trial.suggest_int("n_estimators", 20, 300, log=True),
                  "colsample_bytree": trial.suggest_float("colsample_bytree", 0.5, 1.0)}
        clf = lgb.LGBMClassifier(**params, subsample=0.8, subsample_freq=1, n_jobs=2, random_state=seed, verbose=-1)
        clf.fit(x[tr], y[tr])
        p = clf.booster_.predict(x[va])
        choice = choose_thresholds(y[va], p)
        m = score_metrics(y[va], p, choice.tau_entry, "val")
        trial.set_user_attr("val_pr_auc", m["val_pr_auc"])
        trial.set_user_attr("tau_entry", choice.tau_entry)
        trial.set_user_attr("val_positive_rate", m["val_positive_rate"])
        return m["val_precision_at_tau"] + 1e-3 * m["val_pr_auc"]

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials)
    done = sorted((tr_ for tr_ in study.trials if tr_.value is not None), key=lambda z: -float(z.value or 0.0))
    best = [{"number": z.number, "objective": z.value, "params": z.params, **z.user_attrs} for z in done[:top]]
    atomic_write_json(out_path, {"data": str(data_path), "trials": trials, "top": best})
    click.echo(json.dumps(best[:3], indent=2))
    if train_best is not None and best:
        bp = best[0]["params"]
        out = train_model(data_path, train_best, params=TrainParams(
            n_estimators=bp["n_estimators"], learning_rate=bp["learning_rate"], num_leaves=bp["num_leaves"],
            min_child_samples=bp["min_child_samples"], colsample_bytree=bp["colsample_bytree"],
            early_stopping_rounds=0, seed=seed))
        click.echo(f"best trial trained to {out}")


if __name__ == "__main__":
    main()
