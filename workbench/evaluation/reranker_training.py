"""Fine-tuning a cross-encoder on a dataset's own judgements, with a held-out test.

The training itself is sentence-transformers' `CrossEncoderTrainer`; this module builds the pairs,
the splits and the report.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import ConfigError, PipelineConfig, RerankingConfig, RetrievalConfig
from ..embedding import resolve_model
from ..reranking.base import _top_k
from ..reranking.cross_encoder import CrossEncoderReranker, forget_cross_encoder
from ..retrieval import build_retriever
from ..types import Chunk, Hit
from .reranker_evaluation import Candidates, RerankEvaluation, evaluate_reranker, retrieve_candidates

if TYPE_CHECKING:
    from ..datasets import Dataset

__all__ = ["TrainConfig", "TrainingReport", "train_reranker"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """How `train_reranker` splits queries, builds pairs and fine-tunes.

    Queries with judgements are split three ways: `heldout` of them only test the result;
    of the rest, `validation` only choose the fusion weight; the others give the training pairs.
    Per training query: up to `positives` relevant chunks (label: grade / highest grade), up to
    `negatives` hard negatives drawn at random from the non-relevant chunks of BM25's top
    `depth` (not just its very best: unjudged relevant chunks sit there most often), and
    `random_negatives` from the whole corpus (with hard negatives alone the model learns that
    word overlap means "not relevant"). The loss is pointwise binary cross-entropy on the
    logits, `batch_size` pairs a step, `epochs` passes, linear warm-up over the first tenth of
    the steps then linear decay. `input_weights` are the fusion weights with the input ranking
    (as `RerankingConfig.input_weight`) tried on the validation queries; the best is kept.
    The defaults are the recipe benchmarks/reranking.py measures: a few minutes on two cores
    for a couple of hundred queries (one epoch, few steps, hence the high learning rate).
    """

    base_model: str = "sentence-transformers/all-MiniLM-L6-v2"
    heldout: float = 0.2
    validation: float = 0.25
    depth: int = 20
    positives: int = 2
    negatives: int = 3
    random_negatives: int = 1
    epochs: int = 1
    batch_size: int = 16
    max_length: int = 256
    learning_rate: float = 1e-4
    input_weights: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("heldout", "validation"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ConfigError(f"{name}={getattr(self, name)} must lie in (0, 1), e.g. 0.2")
        for name in ("depth", "positives", "negatives", "epochs", "batch_size", "max_length"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if self.random_negatives < 0:
            raise ConfigError(f"random_negatives must be >= 0, got {self.random_negatives}")
        if self.learning_rate <= 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        if not self.input_weights or not all(0.0 <= w < 1.0 for w in self.input_weights):
            raise ConfigError(
                f"input_weights={self.input_weights} must be a non-empty tuple of weights in [0, 1), "
                "e.g. (0.0, 0.25, 0.5, 0.75)"
            )


@dataclass(frozen=True, kw_only=True)
class TrainingReport:
    """What `train_reranker` did, and whether the result beats its input ranking on held-out queries.

    `evaluation` is the held-out test of the model fused with the input at `input_weight` (the
    weight the validation queries chose); `raw_evaluation` the same queries with the model alone.
    `loss_curve` is the mean training loss over each tenth of the steps (did it learn at all?).
    """

    model_dir: str
    train_queries: tuple[str, ...]
    validation_queries: tuple[str, ...]
    heldout_queries: tuple[str, ...]
    positives: int
    negatives: int
    steps: int
    max_length: int
    train_seconds: float
    loss_curve: tuple[float, ...]
    input_weight: float
    validation_ndcg: Mapping[float, float]
    evaluation: RerankEvaluation
    raw_evaluation: RerankEvaluation

    @property
    def beats_input(self) -> bool:
        """True when held-out nDCG@k after reranking (at the chosen fusion weight) is higher than the input's."""
        s = self.evaluation.summaries[0]
        return s.ndcg_after > s.ndcg_before

    def reranking_config(self, **overrides: Any) -> RerankingConfig:
        """The pipeline config that serves this model as trained: kind "trained", folder, max length, fusion weight."""
        fields = {
            "kind": "trained", "model": self.model_dir, "max_length": self.max_length,
            "input_weight": self.input_weight, **overrides,
        }
        return RerankingConfig(**fields)

    def summary(self) -> str:
        """Pairs, time, the chosen fusion weight, held-out nDCG before and after (fused and raw), p-values, verdicts."""
        s, raw = self.evaluation.summaries[0], self.raw_evaluation.summaries[0]
        return (
            f"trained on {len(self.train_queries)} queries ({self.positives} positive, {self.negatives} "
            f"negative pairs, {self.steps} steps, loss {self.loss_curve[0]:.3f} -> {self.loss_curve[-1]:.3f}) "
            f"in {self.train_seconds:.0f} s; input_weight="
            f"{self.input_weight} chosen on {len(self.validation_queries)} validation queries; held-out "
            f"({len(self.heldout_queries)} queries) nDCG@{s.k} at N={s.depth}: {s.ndcg_before:.4f} -> "
            f"{s.ndcg_after:.4f}, W/L {s.wins}/{s.losses}, p={s.p_value:.4f}: {s.verdict} "
            f"(model alone: {raw.ndcg_after:.4f}, W/L {raw.wins}/{raw.losses}, p={raw.p_value:.4f}: {raw.verdict})"
        )


# One training pair: query, passage, target in [0, 1].
Pair = tuple[str, str, float]


def _training_pairs(candidates: Candidates, qids: Sequence[str], config: TrainConfig) -> tuple[list[Pair], int, int]:
    bm25 = build_retriever(RetrievalConfig(kind="bm25"), candidates.chunks)
    by_doc: dict[str, list[Chunk]] = {}
    for c in candidates.chunks:
        by_doc.setdefault(c.doc_id, []).append(c)
    by_id = {c.id: c for c in candidates.chunks}
    ident = (lambda c: c.doc_id) if candidates.unit == "document" else (lambda c: c.id)
    rng = random.Random(config.seed)
    pairs: list[Pair] = []
    n_pos = n_neg = 0
    for qid in qids:
        query, rel = candidates.queries[qid], candidates.relevance.get(qid, {})
        judged = [(i, g) for i, g in rel.items() if g > 0]
        if not judged:
            continue
        top = max(g for _, g in judged)
        rng.shuffle(judged)
        positives = [
            (c, grade / top) for i, grade in judged
            for c in (by_doc.get(i, []) if candidates.unit == "document" else [by_id[i]])
        ][: config.positives]
        hard_pool = [
            h.chunk for h in bm25.retrieve(query, min(config.depth, len(candidates.chunks)))
            if rel.get(ident(h.chunk), 0) <= 0
        ]
        negatives = rng.sample(hard_pool, min(config.negatives, len(hard_pool)))
        hard = {c.id for c in negatives}
        pool = [c for c in candidates.chunks if c.id not in hard and rel.get(ident(c), 0) <= 0]
        negatives += rng.sample(pool, min(config.random_negatives, len(pool)))
        pairs += [(query, c.text, target) for c, target in positives] + [(query, c.text, 0.0) for c in negatives]
        n_pos += len(positives)
        n_neg += len(negatives)
    return pairs, n_pos, n_neg


def _tenths(values: Sequence[float]) -> tuple[float, ...]:
    """The mean of each tenth of `values` (of each value, when there are fewer than ten)."""
    return tuple(float(np.mean(part)) for part in np.array_split(np.asarray(values), min(10, len(values))))


class _StoredScores:
    """A reranker replaying precomputed scores of each query's top candidates, fused at `weight`."""

    def __init__(self, scores: Mapping[str, np.ndarray], candidates: Candidates, weight: float) -> None:
        self.by_query = {candidates.queries[q]: s for q, s in scores.items()}
        self.weight = weight

    def prepare(self, query: str) -> None:
        """No query-only work: the scores are stored."""

    def rerank(self, query: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        """The best min(k, len(hits)) hits by the stored scores fused with the input order."""
        return _top_k(hits, self.by_query[query][: len(hits)].tolist(), k, self.weight)


def _split(judged: list[str], share: float, rng: random.Random) -> tuple[list[str], list[str]]:
    """(a `share` of `judged`, the rest), both sorted, each at least one query."""
    rng.shuffle(judged)
    n = min(len(judged) - 1, max(1, round(share * len(judged))))
    return sorted(judged[:n]), sorted(judged[n:])


def train_reranker(
    dataset: Dataset,
    output_dir: str | Path,
    *,
    candidates: Candidates | None = None,
    config: TrainConfig | None = None,
) -> TrainingReport:
    """Fine-tune a cross-encoder from the packaged MiniLM weights on `dataset`'s own judgements.

    Positives are the relevant chunks of each training query (from qrels, or chunks overlapping
    span references); negatives are non-relevant chunks from BM25's top `config.depth` plus a
    few random ones. Validation queries pick the weight of the fusion with the input ranking;
    held-out queries, never seen before, test the result against the candidates' own order.
    The folder is a regular CrossEncoder: serve it with `report.reranking_config()`.

    Args:
        dataset: documents, queries and judgements.
        output_dir: where the model is saved (created; existing model files are replaced).
        candidates: the first-stage rankings to train on and rerank (default: the default
            pipeline's hybrid retrieval, `config.depth` deep).
        config: splits, pair counts, steps, learning rate, fusion weights tried, seed.

    Returns:
        A `TrainingReport` with the held-out evaluation.

    Raises:
        ValueError: fewer than three judged queries, or no training pair.
    """
    config = config or TrainConfig()
    if candidates is None:
        candidates = retrieve_candidates(PipelineConfig(), dataset, depth=config.depth)
    judged = [q for q in candidates.hits if any(g > 0 for g in candidates.relevance.get(q, {}).values())]
    if len(judged) < 3:
        raise ValueError(
            f"{dataset.name!r} has {len(judged)} judged queries among the candidates; training, "
            "validation and a held-out test need at least three (add qrels or span references)"
        )
    rng = random.Random(config.seed)
    heldout, rest = _split(judged, config.heldout, rng)
    validation, train = _split(rest, config.validation, rng) if len(rest) > 1 else ([], rest)
    pairs, n_pos, n_neg = _training_pairs(candidates, train, config)
    if not n_pos or not n_neg:
        raise ValueError(
            f"{n_pos} positive and {n_neg} negative pairs from {len(train)} queries of {dataset.name!r}; "
            "training needs both: check the judgements"
        )

    t0 = time.perf_counter()
    model, losses, steps = _fit(pairs, config)
    seconds = time.perf_counter() - t0
    output_dir = Path(output_dir)
    _save_atomically(model, output_dir)
    forget_cross_encoder(output_dir)  # a retrained folder must not be served from the process cache

    depth = min(config.depth, candidates.depth)
    k = min(10, depth)

    def evaluate(weight: float, qids: Sequence[str], name: str) -> RerankEvaluation:
        reranker = CrossEncoderReranker(str(output_dir), max_length=config.max_length, input_weight=weight)
        return evaluate_reranker(reranker, candidates, depths=(depth,), k=k, name=name, query_ids=qids)

    # The validation queries are scored once; each weight only re-fuses (its timings are unused).
    scorer = CrossEncoderReranker(str(output_dir), max_length=config.max_length)
    scores = {q: scorer.score(candidates.queries[q], [h.chunk.text for h in candidates.hits[q][:depth]])
              for q in validation}
    validation_ndcg = {
        w: evaluate_reranker(
            _StoredScores(scores, candidates, w), candidates, depths=(depth,), k=k, query_ids=validation
        ).summaries[0].ndcg_after
        for w in config.input_weights
    } if validation else {}
    weight = max(validation_ndcg, key=lambda w: (validation_ndcg[w], w)) if validation_ndcg else 0.0
    raw = evaluate(0.0, heldout, "trained")
    fused = raw if weight == 0.0 else evaluate(weight, heldout, f"trained + input w={weight}")
    return TrainingReport(
        model_dir=str(output_dir), train_queries=tuple(train), validation_queries=tuple(validation),
        heldout_queries=tuple(heldout), positives=n_pos, negatives=n_neg, steps=steps, max_length=config.max_length,
        train_seconds=seconds, loss_curve=_tenths(losses), input_weight=weight, validation_ndcg=validation_ndcg,
        evaluation=fused, raw_evaluation=raw,
    )


def _fit(pairs: list[Pair], config: TrainConfig) -> tuple[Any, list[float], int]:
    """Fine-tune a one-logit CrossEncoder on `pairs` with sentence-transformers' own trainer.

    Pointwise binary cross-entropy on the logits, AdamW (weight decay 0.01), linear warm-up over
    the first tenth of the steps then linear decay, gradients clipped at norm 1, shuffled with
    `config.seed`. Returns the model, the loss of every step and the number of steps.
    """
    import tempfile

    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("training needs the `datasets` and `accelerate` packages; run `pip install -e .`") from exc
    from sentence_transformers import CrossEncoder
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    set_seed(config.seed)  # the new classification head's initial weights
    steps = config.epochs * math.ceil(len(pairs) / config.batch_size)
    model = CrossEncoder(resolve_model(config.base_model), num_labels=1, max_length=config.max_length, device="cpu")
    train = datasets.Dataset.from_dict({
        "query": [q for q, _, _ in pairs], "passage": [p for _, p, _ in pairs], "label": [t for _, _, t in pairs],
    })
    with tempfile.TemporaryDirectory(prefix="workbench-train-") as scratch:  # the trainer's output_dir: nothing saved
        args = CrossEncoderTrainingArguments(
            output_dir=scratch, num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
            learning_rate=config.learning_rate, weight_decay=0.01, lr_scheduler_type="linear",
            warmup_steps=max(1, steps // 10), max_grad_norm=1.0, seed=config.seed, use_cpu=True,
            logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True,
        )
        trainer = CrossEncoderTrainer(model=model, args=args, train_dataset=train, loss=BinaryCrossEntropyLoss(model))
        trainer.remove_callback(PrinterCallback)  # it prints every step's loss; they go into the report instead
        trainer.train()
    model.model.eval()
    losses = [float(entry["loss"]) for entry in trainer.state.log_history if "loss" in entry]
    return model, losses, trainer.state.global_step


def _save_atomically(model: Any, output_dir: Path) -> None:
    """Save to a sibling folder, then swap it in, so a crash never leaves half a model."""
    import shutil
    import tempfile

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}."))
    try:
        model.save(str(tmp))
        old = None
        if output_dir.exists():
            old = output_dir.with_name(f".{output_dir.name}.old-{os.getpid()}")
            os.replace(output_dir, old)
        os.replace(tmp, output_dir)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
