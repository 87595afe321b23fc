"""Extractive summarisation and ROUGE (spec 05 section 3.8; the SemAE/QT assembly convention).

* :func:`split_sentences`: a rule-based splitter for review text (``.!?`` followed by space or a capital
  letter, e.g. "great.I"), whitespace-normalised.
* :func:`select_summary`: greedy assembly: go down the sentences by score, skip sentences with fewer than
  ``min_words`` words, skip any whose TF-IDF cosine (English stop words removed, IDF fitted on the pool)
  with an already selected sentence is ``>= redundancy`` (0.75), skip a sentence that would overflow the
  word budget, stop when the budget is reached or the pool is exhausted.
* :func:`rouge`: ROUGE-1/2/L F1 from the maintained ``rouge-score`` package (Google Research) with
  Porter stemming, averaged over the references (one score per reference, then the mean).
* :func:`oracle_summary`: greedy extractive oracle (adds the sentence that most increases mean
  ROUGE-1 + ROUGE-2 F1 against the references), an upper bound for extractive systems.
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_SPLIT = re.compile(r"(?<=[.!?])\s+|(?<=[a-z][.!?])(?=[A-Z])")
_SCORER = None


def split_sentences(text: str) -> list[str]:
  """Sentences of a review; empty pieces dropped."""
  if not isinstance(text, str):
    raise TypeError(f"split_sentences expects a string, got {type(text).__name__}.")
  parts = _SPLIT.split(" ".join(text.split()))
  return [p.strip() for p in parts if p and p.strip()]


def num_words(s: str) -> int:
  return len(s.split())


def select_summary(sentences: Sequence[str], scores, word_budget: int, redundancy: float = 0.75,
                   min_words: int = 3) -> list[int]:
  """Indices of the selected sentences, in selection (score) order. Higher score = more central."""
  from sklearn.feature_extraction.text import TfidfVectorizer
  sentences = list(sentences)
  scores = np.asarray(scores, np.float64)
  if len(sentences) != scores.shape[0]:
    raise ValueError(f"{len(sentences)} sentences but {scores.shape[0]} scores.")
  if word_budget < 1:
    raise ValueError(f"word_budget must be >= 1, got {word_budget}.")
  if np.isnan(scores).any():
    raise ValueError("scores contain NaN; map unreachable geodesics to a finite score (e.g. 0) first.")
  if not sentences:
    return []
  try:
    tf = TfidfVectorizer(stop_words="english").fit_transform(sentences)
  except ValueError:                                 # only stop words / empty vocabulary
    tf = None
  order = np.argsort(-scores, kind="stable")
  chosen, used = [], 0
  for i in order:
    w = num_words(sentences[i])
    if w < min_words or used + w > word_budget:
      continue
    if tf is not None and chosen:
      sims = (tf[chosen] @ tf[i].T).toarray().ravel()
      if sims.max() >= redundancy:
        continue
    chosen.append(int(i))
    used += w
    if used >= word_budget:
      break
  return chosen


def _scorer():
  global _SCORER
  if _SCORER is None:
    from rouge_score import rouge_scorer
    _SCORER = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  return _SCORER


def rouge(summary: str, references: Sequence[str]) -> dict:
  """Mean over references of ROUGE-1/2/L F1 (``rouge-score``, stemming on)."""
  if isinstance(references, str):
    references = [references]
  if not references:
    raise ValueError("rouge needs at least one reference summary.")
  out = {t: 0.0 for t in ROUGE_TYPES}
  for ref in references:
    sc = _scorer().score(ref, summary)
    for t in ROUGE_TYPES:
      out[t] += sc[t].fmeasure / len(references)
  return out


def oracle_summary(sentences: Sequence[str], references: Sequence[str], word_budget: int,
                   min_words: int = 3) -> list[int]:
  """Greedy extractive oracle under the same word budget."""
  chosen, used = [], 0
  best = 0.0
  while True:
    cand = None
    for i, s in enumerate(sentences):
      w = num_words(s)
      if i in chosen or w < min_words or used + w > word_budget:
        continue
      r = rouge(" ".join(sentences[j] for j in chosen + [i]), references)
      v = r["rouge1"] + r["rouge2"]
      if v > best:
        best, cand = v, i
    if cand is None:
      return chosen
    chosen.append(cand)
    used += num_words(sentences[cand])
