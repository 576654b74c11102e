"""One evaluation run: restore (or randomly initialise) a point encoder, extract eval-mode
features of a dataset's splits, run the linear-SVM and/or few-shot protocols, draw the figures
and write `eval.json`. `launch/evaluate.py` parses flags and calls `evaluate(config, workdir)`;
the demo and notebooks call the same functions directly:

  evaluate(config, workdir=None) -> dict              the whole run (files only with a workdir)
  linear_svm_from_checkpoint(checkpoint_or_none, data_cfg, model_cfg=None, workdir=None,
                             options={"svm.C": 0.01, ...}) -> dict
  fewshot_from_checkpoint(the same arguments) -> dict    (both: evaluate_checkpoint)
  load_encoder(checkpoint_or_none, model_cfg, train_points, ...) -> Encoder
  bn_reestimate.random_init_encoder(model_cfg, train_points, seed) -> variables

Files in the workdir: `config.json` (at the start), `eval.json` (every number; overall SVM
accuracy under `accuracy`), `metrics.jsonl` (one row, `eval/svm/accuracy`, ...),
`confusion.png` (raw-feature SVM, rows = truth), `tsne.png` on request, and on request the
features as .npy. Accuracies are fractions in [0, 1]; the printed summary shows percent.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from mmpoint_jax import config_lib, io_utils, run_log
from mmpoint_jax.data.datasets import PointCloudSet
from mmpoint_jax.evaluate import bn_reestimate, eval_config, splits, tsne

EVAL_FILE = "eval.json"
CONFUSION_PNG = "confusion.png"
TSNE_PNG = "tsne.png"


@dataclasses.dataclass(frozen=True)
class Encoder:
    model: ml_collections.ConfigDict  # the point encoder's config (build_point_encoder)
    variables: dict[str, Any]  # {"params", "batch_stats"}
    description: dict[str, Any]  # what eval.json records: kind, path, source, step, ...


# ------------------------------------------------------------------------------------- config


def parse_protocols(text: str) -> tuple[str, ...]:
    """'svm', 'fewshot' or 'svm,fewshot' -> the protocols in that order; unknown names raise."""
    names = tuple(p.strip() for p in str(text).split(",") if p.strip())
    unknown = [p for p in names if p not in eval_config.PROTOCOLS]
    if not names or unknown:
        raise config_lib.ConfigError(
            f"config field 'protocol' = {text!r}; expected one or more of "
            f"{list(eval_config.PROTOCOLS)}, comma-separated"
        )
    return names


def is_random_init(checkpoint: str) -> bool:
    return str(checkpoint).strip().lower() == eval_config.NO_CHECKPOINT


def check_config(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    """Fails before any work with an error naming the field (or the missing path)."""
    from mmpoint_jax.train.checkpointing import CheckpointError

    protocols = parse_protocols(config.protocol)
    if not config.checkpoint:
        raise config_lib.ConfigError(
            "config field 'checkpoint' is empty: pass --config.checkpoint=PATH (a pretraining "
            "workdir, a step folder or an encoder export) or --config.checkpoint=none"
        )
    if not is_random_init(config.checkpoint) and not Path(config.checkpoint).exists():
        raise CheckpointError(f"checkpoint: path not found: {config.checkpoint}")
    splits.check_data_config(config.data)
    config_lib.check_choice(config, "svm.kernel", ("auto", "gram", "linear"))
    config_lib.check_choice(config, "tsne_options.split", ("train", "test"))
    config_lib.check_positive(config, "batch_size")
    config_lib.check_positive(config, "svm.C")
    config_lib.check_positive(config, "fewshot.C")
    config_lib.check_positive(config, "override_k", allow_zero=True)
    config_lib.check_positive(config, "bn_reestimate_clouds", allow_zero=True)
    return protocols


# ------------------------------------------------------------------------------------ encoder


def load_encoder(
    checkpoint: str,
    model_cfg: Any = None,
    train_points: np.ndarray | None = None,
    *,
    seed: int = 0,
    batch_size: int = 64,
    override_k: int = 0,
    bn_clouds: int = 0,
) -> Encoder:
    """The point encoder to evaluate.

    `checkpoint` is anything `checkpointing.restore_encoder` reads, or 'none': then `model_cfg`
    is initialised from `seed` and its BatchNorm statistics re-estimated on `train_points`
    [M, N, 3] (bn_reestimate), all of them or a seeded random subset of `bn_clouds`.
    `override_k` > 0 evaluates a DGCNN with another neighbour count.
    """
    if is_random_init(checkpoint):
        if model_cfg is None or train_points is None:
            raise ValueError("checkpoint=none needs model_cfg and train_points (BN re-estimation)")
        model = _with_k(ml_collections.ConfigDict(_as_dict(model_cfg)), override_k)
        start = time.perf_counter()
        variables = bn_reestimate.init_encoder_variables(model, train_points.shape[1], seed)
        chosen = tsne.subsample(len(train_points), bn_clouds or None, seed)
        variables, report = bn_reestimate.reestimate_batch_stats(
            model, variables, train_points[chosen], batch_size
        )
        report["seconds"] = round(time.perf_counter() - start, 3)
        description = {"kind": "random_init", "seed": seed, "bn_reestimate": report}
        return Encoder(model, variables, description)

    from mmpoint_jax.train.checkpointing import restore_encoder

    restored = restore_encoder(checkpoint, tower="point")
    description = {"kind": "checkpoint", "path": restored.path, "source": restored.source}
    if "step" in restored.extra:
        description["step"] = restored.extra["step"]
    return Encoder(_with_k(restored.model, override_k), restored.variables, description)


def _as_dict(cfg: Any) -> dict:
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def _with_k(model: ml_collections.ConfigDict, override_k: int) -> ml_collections.ConfigDict:
    if not override_k:
        return model
    if model.get("name") != "dgcnn":
        raise config_lib.ConfigError(
            f"config field 'override_k' applies to DGCNN only; the encoder is {model.get('name')!r}"
        )
    model = ml_collections.ConfigDict(_as_dict(model))
    model.k = int(override_k)
    return model


def extract(encoder: Encoder, dataset: PointCloudSet, split: str, batch_size: int) -> np.ndarray:
    """Eval-mode global features [M, F] of one split (progress bar)."""
    from mmpoint_jax import features

    return features.extract_features(
        encoder.model, encoder.variables, dataset.points, batch_size, desc=f"features {split}"
    )


# ---------------------------------------------------------------------------------- protocols


def svm_section(
    train_feats, train_labels, test_feats, test_labels, svm_cfg: Any, num_classes: int, seed: int
) -> dict[str, Any]:
    """Linear SVM (papers' protocol) and, if asked, the standardised variant under 'standardised'."""
    from mmpoint_jax.evaluate import svm

    options = dict(
        C=float(svm_cfg["C"]),
        C_candidates=tuple(svm_cfg["C_candidates"]) or None,
        val_fraction=float(svm_cfg["val_fraction"]),
        seed=seed,
        kernel=svm_cfg["kernel"],
        num_classes=num_classes,
    )
    if svm_cfg["standardised"]:
        return svm.linear_svm_protocol(
            train_feats, train_labels, test_feats, test_labels, **options
        )
    return svm.linear_svm_eval(train_feats, train_labels, test_feats, test_labels, **options)


def _svm_for_json(result: Mapping[str, Any], class_names: Sequence[str]) -> dict[str, Any]:
    """Drops per-object predictions; names the per-class accuracies."""
    out = {k: v for k, v in result.items() if k not in ("predictions", "standardised")}
    out["per_class_accuracy"] = dict(
        zip(class_names, np.asarray(result["per_class_accuracy"]).tolist(), strict=False)
    )
    if "standardised" in result:
        out["standardised"] = _svm_for_json(result["standardised"], class_names)
    return out


def fewshot_section(train_feats, train_labels, fewshot_cfg: Any, seed: int) -> dict[str, Any]:
    """Every (N-way, K-shot) of ways x shots on the train features (CrossPoint's protocol)."""
    from mmpoint_jax.evaluate import fewshot

    settings = [(int(n), int(k)) for n in fewshot_cfg["ways"] for k in fewshot_cfg["shots"]]
    return fewshot.fewshot_suite(
        train_feats,
        train_labels,
        settings,
        n_query=int(fewshot_cfg["n_query"]),
        n_trials=int(fewshot_cfg["n_trials"]),
        seed=seed,
        C=float(fewshot_cfg["C"]),
    )


# --------------------------------------------------------------------------------------- run


def evaluate(config: ml_collections.ConfigDict, workdir: str | None = None) -> dict[str, Any]:
    """The whole evaluation `config` describes (eval_config); files go to `workdir` if given."""
    # --- config -------------------------------------------------------------------------------
    protocols = check_config(config)
    out = Path(workdir).absolute() if workdir else None
    writes = out is not None and run_log.is_main_process()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        run_log.write_config(out, config)
    run_log.log(f"evaluate [{','.join(protocols)}] checkpoint {config.checkpoint}")

    # --- data ---------------------------------------------------------------------------------
    run_log.log(f"data: {config.data.format} from {config.data.root}")
    train_split, test_split = config.data.train_split, config.data.test_split
    tsne_split = train_split if config.tsne_options.split == "train" else test_split
    datasets = {train_split: splits.load_split(config.data, train_split)}
    wanted = {train_split}
    if "svm" in protocols:
        wanted.add(test_split)
    if config.tsne:
        wanted.add(tsne_split)
    if test_split in wanted:
        datasets[test_split] = splits.load_split(config.data, test_split)
    # records name only the classes they hold: take the longest list of the splits read
    class_names = max((d.class_names for d in datasets.values()), key=len)

    # --- encoder ------------------------------------------------------------------------------
    run_log.log("encoder")
    encoder = load_encoder(
        config.checkpoint,
        config.model,
        datasets[train_split].points,
        seed=config.seed,
        batch_size=config.batch_size,
        override_k=config.override_k,
        bn_clouds=config.bn_reestimate_clouds,
    )

    # --- features -----------------------------------------------------------------------------
    run_log.log("features")
    feats, feature_seconds = {}, {}
    for split in sorted(wanted, key=[train_split, test_split].index):
        start = time.perf_counter()
        feats[split] = extract(encoder, datasets[split], split, config.batch_size)
        feature_seconds[split] = time.perf_counter() - start
        if writes and config.save_features:
            _save_npy(out / f"features_{split}.npy", feats[split])
            _save_npy(out / f"labels_{split}.npy", datasets[split].labels)
    num_objects = sum(len(datasets[s]) for s in feats)
    results: dict[str, Any] = {
        "protocol": ",".join(protocols),
        "encoder": {**encoder.description, "model": _as_dict(encoder.model)},
        "data": {
            "format": config.data.format,
            "root": str(config.data.root),
            "class_names": list(class_names),
            "splits": {s: splits.describe(datasets[s]) for s in feats},
        },
        "features": {
            "dim": int(feats[train_split].shape[1]),
            "seconds": {s: round(t, 3) for s, t in feature_seconds.items()},
            "objects_per_s": num_objects / max(sum(feature_seconds.values()), 1e-9),
        },
    }

    # --- protocols ----------------------------------------------------------------------------
    train_labels = datasets[train_split].labels
    if "svm" in protocols:
        run_log.log("linear SVM")
        result = svm_section(
            feats[train_split],
            train_labels,
            feats[test_split],
            datasets[test_split].labels,
            config.svm,
            len(class_names),
            config.seed,
        )
        results.update(_svm_for_json(result, class_names))
        if writes:
            from mmpoint_jax.evaluate import plots

            title = f"linear SVM, C={result['C']:g}: {100 * result['accuracy']:.2f} %"
            results["confusion_png"] = plots.save_confusion_matrix_png(
                result["confusion"], out / CONFUSION_PNG, class_names, title
            )
    if "fewshot" in protocols:
        run_log.log("few-shot")
        results["fewshot"] = fewshot_section(
            feats[train_split], train_labels, config.fewshot, config.seed
        )
    if config.tsne and writes:
        run_log.log("t-SNE")
        results["tsne"] = tsne.save_tsne_png(
            feats[tsne_split],
            datasets[tsne_split].labels,
            out / TSNE_PNG,
            class_names,
            title=f"t-SNE of {tsne_split} features",
            seed=config.seed,
            max_points=config.tsne_options.max_points,
            perplexity=config.tsne_options.perplexity,
            max_iter=config.tsne_options.max_iter,
            num_threads=config.tsne_options.num_threads or None,
        )

    # --- write --------------------------------------------------------------------------------
    results = run_log.config_to_dict(results)  # numpy -> builtins; NaN stays readable
    if writes:
        io_utils.atomic_write_json(out / EVAL_FILE, results)
        run_log.MetricsWriter(out).write(0, metric_row(results))
    return results


def metric_row(results: Mapping[str, Any]) -> dict[str, Any]:
    """The headline numbers under metric names (`eval/svm/accuracy`, `eval/fewshot/5way_10shot`)."""
    row = {}
    if "accuracy" in results:
        row["eval/svm/accuracy"] = results["accuracy"]
        row["eval/svm/mean_class_accuracy"] = results["mean_class_accuracy"]
        if "standardised" in results:
            row["eval/svm_standardised/accuracy"] = results["standardised"]["accuracy"]
    for name, setting in results.get("fewshot", {}).items():
        row[f"eval/fewshot/{name}/mean"] = setting["accuracy_mean"]
        row[f"eval/fewshot/{name}/std"] = setting["accuracy_std"]
    return row


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """What the entry point prints: the papers' numbers in percent."""
    from mmpoint_jax.evaluate import fewshot

    lines = []
    if "accuracy" in results:
        line = (
            f"linear SVM (C={results['C']:g}): accuracy {100 * results['accuracy']:.2f} %, "
            f"mean class accuracy {100 * results['mean_class_accuracy']:.2f} % "
            f"({results['num_train']} train / {results['num_test']} test objects)"
        )
        lines.append(line)
        if "standardised" in results:
            scaled = results["standardised"]
            lines.append(
                f"linear SVM, standardised features (C={scaled['C']:g}): accuracy "
                f"{100 * scaled['accuracy']:.2f} %, mean class accuracy "
                f"{100 * scaled['mean_class_accuracy']:.2f} %"
            )
    for setting in results.get("fewshot", {}).values():
        lines.append(f"few-shot {fewshot.format_fewshot(setting)}")
    return lines


def _save_npy(path: Path, array: np.ndarray) -> None:
    from mmpoint_jax.features import save_npy_atomic

    save_npy_atomic(str(path), np.asarray(array))


# ------------------------------------------------------------------------- library shortcuts


def evaluate_checkpoint(
    checkpoint_or_none: str,
    data_cfg: Any,
    model_cfg: Any = None,
    workdir: str | None = None,
    options: Mapping[str, Any] | None = None,
    protocol: str = "svm",
) -> dict[str, Any]:
    """`evaluate` of a checkpoint (or 'none': random init, BN re-estimated) without a config file.

    `data_cfg`: {"format", "root", ...} (splits.default_data_config fills the rest);
    `model_cfg`: the encoder of 'none'; `options`: dotted config fields, e.g.
    {"svm.C": 0.01, "batch_size": 32, "seed": 1}; `protocol` as in eval_config. Returns what
    eval.json holds; misspelt fields raise ConfigError.
    """
    config = eval_config.base_config(protocol)
    config.checkpoint = str(checkpoint_or_none)
    if model_cfg is not None:
        config.model = ml_collections.ConfigDict(_as_dict(model_cfg))
    config.lock()  # a misspelt data field or option fails instead of being ignored
    fields = {f"data.{k}": v for k, v in _as_dict(data_cfg).items()}
    for key, value in {**fields, **(options or {})}.items():
        config_lib.set_field(config, key, value)
    return evaluate(config, workdir)


linear_svm_from_checkpoint = functools.partial(evaluate_checkpoint, protocol="svm")
fewshot_from_checkpoint = functools.partial(evaluate_checkpoint, protocol="fewshot")
