"""Perturb-Max discrete distributions (kexue.fm 9085); the normal-noise 1-D integral shared with EXACT (9098).

Re-exports the public API of :mod:`research.distributions.perturb_max`.
"""
from research.distributions.perturb_max import (  # noqa: F401
    GUMBEL_STD, METHODS, NOISES, RULES, Noise, custom_noise, get_noise, log_cdf, perturb_max_log_prob_of,
    perturb_max_log_probs, perturb_max_probs, perturb_max_probs_mc, quadrature, relaxed_sample, sample,
    sample_noise, straight_through_sample, two_class_closed_form, validate_logits)
