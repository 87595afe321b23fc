"""Evaluation metrics: STS (kexue.fm 8847 / 9341), generative precision / recall and FID (9147), retrieval
ranking and extractive summarisation with ROUGE (9368).

* :mod:`~research.eval.sts` -- the CoSENT evaluation protocol: Spearman's rho between scores and gold
  labels (:func:`spearman`), accuracy at a threshold chosen on the validation split
  (:func:`threshold_sweep`, :func:`threshold_powell`, :func:`accuracy_at`), :func:`evaluate_split`, :func:`auc`.
* :mod:`~research.eval.generative` -- k-NN precision / recall (Kynkaanniemi et al.), density / coverage and
  the Frechet distance ``||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))`` in a classifier's feature
  space: :func:`precision_recall`, :func:`density_coverage`, :func:`frechet_distance`,
  :func:`evaluate_samples`.
* :mod:`~research.eval.retrieval` -- near-vs-far ranking: :func:`retrieval_metrics`, :func:`roc_auc`,
  :func:`average_precision`.
* :mod:`~research.eval.summarization` -- extractive summaries under a word budget and ROUGE-1/2/L:
  :func:`select_summary`, :func:`rouge`, :func:`oracle_summary`.

Example::

    import numpy as np
    from research import eval as ev
    ev.spearman(np.array([0.1, 0.5, 0.9]), np.array([0, 1, 2]))   # 1.0
"""
from research.eval import generative, retrieval, sts, summarization
from research.eval.generative import (FeatureClassifier, classifier_features, density_coverage, evaluate_samples,
                                      frechet_distance, precision_recall, train_classifier)
from research.eval.retrieval import average_precision, retrieval_metrics, roc_auc
from research.eval.sts import (accuracy_at, auc, binary_labels, evaluate_split, select_best, spearman,
                               threshold_powell, threshold_sweep)
from research.eval.summarization import ROUGE_TYPES, oracle_summary, rouge, select_summary, split_sentences

__all__ = [
    "generative", "retrieval", "sts", "summarization",
    "FeatureClassifier", "classifier_features", "density_coverage", "evaluate_samples", "frechet_distance",
    "precision_recall", "train_classifier",
    "average_precision", "retrieval_metrics", "roc_auc",
    "accuracy_at", "auc", "binary_labels", "evaluate_split", "select_best", "spearman", "threshold_powell",
    "threshold_sweep",
    "ROUGE_TYPES", "oracle_summary", "rouge", "select_summary", "split_sentences",
]
