"""Losses: EXACT and its accuracy surrogates (kexue.fm 9098), CoSENT (kexue.fm 8847 / 9341).

* :mod:`~research.losses.exact` -- EXACT trains the expected accuracy of a stochastic classifier
  ``s = mu(x) / sigma + eps``::

      p(y | x) = P(y = argmax s) = int phi(e) prod_{j != y} Phi(Delta_j / sigma + e) de,   Delta_j = z_y - z_j

  Entry points: :func:`exact_loss` (``mean``: ``1 - mean p``; ``meanlog``: ``-mean log p``),
  :func:`exact_prob`, :func:`exact_log_prob_quadrature`, :func:`ce_and_smoothed_accuracy`.
* :mod:`~research.losses.surrogates` -- the EXACT paper's baselines over ``[..., C]`` logits and integer
  labels: :func:`cross_entropy`, :func:`hinge` (``max(0, m - Delta_j)``), :func:`sigmoid_loss`,
  :func:`beta_bernoulli_loss`, :func:`polynomial_loss`, :func:`poly1_loss`, :func:`smoothed_accuracy_loss`
  (``1 - p_y``), :func:`accuracy`.
* :mod:`~research.losses.cosent` -- CoSENT, one logsumexp over all pairs of labelled pairs::

      L = log(1 + sum_{p, q : y_p < y_q} exp(s_p - s_q))

  Entry points: :func:`cosent_loss` (``impl="pairwise"`` or ``"sorted"``), :func:`cosent_cosine_loss`
  (bi-encoders, ``lambda = 20``), :func:`cosent_logit_loss` (cross-encoders), :func:`pair_cosines`.

Bad input: eager calls raise ``ValueError`` naming the problem (shapes, out-of-range or non-finite labels);
under ``jit`` an invalid label or a NaN input gives a NaN loss, never a finite wrong value, so
:func:`research.train.fit` stops at that step with ``NonFiniteLossError``.

Example::

    import jax.numpy as jnp
    from research import losses
    losses.cosent_loss(jnp.array([0.1, 0.9, 0.4]), jnp.array([0, 1, 0]))
"""
from research.losses import cosent, exact, surrogates
from research.losses.cosent import (COSINE_SCALE, LOGIT_CLIP, LOGIT_SCALE, cosent_brute_force, cosent_cosine_loss,
                                    cosent_logit_loss, cosent_loss, pair_cosines, validate_scores_labels)
from research.losses.exact import ce_and_smoothed_accuracy, exact_log_prob_quadrature, exact_loss, exact_prob
from research.losses.surrogates import (SURROGATES, accuracy, beta_bernoulli_loss, cross_entropy, hinge,
                                        poly1_loss, polynomial_loss, sigmoid_loss, smoothed_accuracy_loss)

__all__ = [
    "cosent", "exact", "surrogates",
    "COSINE_SCALE", "LOGIT_CLIP", "LOGIT_SCALE", "cosent_brute_force", "cosent_cosine_loss", "cosent_logit_loss",
    "cosent_loss", "pair_cosines", "validate_scores_labels",
    "ce_and_smoothed_accuracy", "exact_log_prob_quadrature", "exact_loss", "exact_prob",
    "SURROGATES", "accuracy", "beta_bernoulli_loss", "cross_entropy", "hinge", "poly1_loss", "polynomial_loss",
    "sigmoid_loss", "smoothed_accuracy_loss",
]
