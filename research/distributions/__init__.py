"""Perturb-Max discrete distributions (kexue.fm 9085); the normal-noise 1-D integral shared with EXACT (9098).

For logits ``mu`` and i.i.d. noise ``eps`` with CDF ``Phi``, the Perturb-Max distribution is::

    p_i = P[argmax_k (mu_k + eps_k) = i] = E_eps[ prod_{j != i} Phi(mu_i - mu_j + eps) ]          (PM)

Gumbel noise gives softmax exactly; normal noise the independent multinomial probit. Evaluated in log space
with a 1-D quadrature over the noise (``rule``: ``grid`` as in the article, ``midpoint``, ``gauss_hermite``)
and either the article's O(n^2 K) pairwise formula or an O(n K) integral over the law of the maximum.

Entry points (all on the last axis of ``logits``, any batch shape; jit / vmap / grad-safe):
:func:`perturb_max_probs`, :func:`perturb_max_log_probs`, :func:`perturb_max_log_prob_of` (one label, the
integral EXACT uses), :func:`perturb_max_probs_mc` (Monte Carlo check), :func:`sample`,
:func:`straight_through_sample`, :func:`relaxed_sample`, :func:`two_class_closed_form`, :func:`quadrature`,
:func:`get_noise` / :func:`custom_noise`; :func:`validate_logits` checks inputs eagerly.

Example::

    import jax, jax.numpy as jnp
    from research import distributions as D
    p = D.perturb_max_probs(jnp.array([1.0, 0.0, -1.0]), noise="normal", rule="gauss_hermite", num_nodes=16)
    y = D.sample(jax.random.key(0), jnp.array([1.0, 0.0, -1.0]), noise="gumbel")
"""
from research.distributions.perturb_max import (  # noqa: F401
    GUMBEL_STD, METHODS, NOISES, RULES, Noise, custom_noise, get_noise, log_cdf, perturb_max_log_prob_of,
    perturb_max_log_probs, perturb_max_probs, perturb_max_probs_mc, quadrature, relaxed_sample, sample,
    sample_noise, straight_through_sample, two_class_closed_form, validate_logits)
from research.distributions import perturb_max

__all__ = [
    "perturb_max", "GUMBEL_STD", "METHODS", "NOISES", "RULES", "Noise", "custom_noise", "get_noise", "log_cdf",
    "perturb_max_log_prob_of", "perturb_max_log_probs", "perturb_max_probs", "perturb_max_probs_mc", "quadrature",
    "relaxed_sample", "sample", "sample_noise", "straight_through_sample", "two_class_closed_form",
    "validate_logits",
]
