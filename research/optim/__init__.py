"""Optimizers (optax ``GradientTransformation`` s): Amos and Su's rules (kexue.fm 9344), EXACT's gradient
normaliser (kexue.fm 9098).

* :mod:`~research.optim.amos` -- Amos (Tian & Parikh, arXiv:2210.11693), numerically identical to
  jestimator 0.3.3. Per parameter tensor with target scale ``eta``::

      v_t = beta v_{t-1} + (1 - beta) mean(g^2),     gamma_t = c_t / sqrt(v_t) * eta
      u_t = -gamma_t g - 0.5 xi^2 gamma_t^2 / eta^2 * d_t theta   (decays d_t, c_t from the slot b_t)

  Entry points: :func:`amos.amos <research.optim.amos.amos>` (with ``eta_fn``/``shape_fn`` from
  :mod:`~research.optim.rules`), :func:`scale_by_amos`, :class:`ScaleByAmosState`.
* :mod:`~research.optim.su_rules` -- Su's rules R2 / R3 as a plug-in transform:
  :func:`su_rules.su_rules <research.optim.su_rules.su_rules>`,
  :func:`adam_su`, :func:`lion_su`, :func:`r2_schedule`, :func:`r3_schedule`.
* :mod:`~research.optim.rules` -- per-parameter hyperparameters from regex rules over parameter paths:
  :func:`eta_fn`, :func:`shape_fn`, :func:`sigma_fn` and ready rule sets (:func:`flax_eta_rules`,
  :func:`flax_shape_rules`, :func:`bert_eta_rules`, :func:`mnist_cnn_eta_rules`, ...). This is what Amos's
  ``eta_fn=`` and ``shape_fn=`` take.
* :mod:`~research.optim.grad_normalizer` -- EXACT's gradient normaliser ``g / ||g||`` and its sigma / LR
  schedules: :func:`gradient_normalizer`, :func:`sigma_schedule`, :func:`epoch_exponential_lr`.
* :mod:`~research.optim.memory` -- optimizer-state bytes of any optax optimizer: :func:`optimizer_state_bytes`.
* :mod:`~research.optim.amos_oracle` -- loading the jestimator oracle (tests and the ``oracle`` variant).

Example::

    import jax.numpy as jnp, optax
    from research import optim
    params = {"dense": {"kernel": jnp.ones((4, 3)), "bias": jnp.zeros(3)}}
    tx = optim.amos.amos(learning_rate=0.01, eta_fn=optim.eta_fn(optim.flax_eta_rules()),
                         shape_fn=optim.shape_fn(optim.flax_shape_rules()))
    updates, state = tx.update(params, tx.init(params), params)
"""
# The modules `amos` and `su_rules` keep their names (`from research.optim import amos` is the module); their
# transforms are `amos.amos` and `su_rules.su_rules`.
from research.optim import amos, amos_oracle, grad_normalizer, memory, rules, su_rules
from research.optim.amos import DEFAULT_EPSILON, ScaleByAmosState, path_names, scale_by_amos, slot_shape
from research.optim.grad_normalizer import (GradientNormalizerState, epoch_exponential_lr, gradient_normalizer,
                                            sigma_schedule, sigma_values, variance_schedule)
from research.optim.memory import optimizer_state_bytes, tree_bytes
from research.optim.rules import (bert_eta_rules, bert_shape_rules, describe, eta_fn, flax_eta_rules,
                                  flax_shape_rules, mnist_cnn_eta_rules, mnist_cnn_shape_rules, params_fn, shape_fn,
                                  sigma_fn, su_sigma_rules)
from research.optim.su_rules import (SuRulesState, adam_su, lion_equivalent, lion_su, r2_alpha0_p_from_half_life,
                                     r2_schedule, r3_kappa_from_half_life, r3_schedule)

__all__ = [
    "amos", "amos_oracle", "grad_normalizer", "memory", "rules", "su_rules",
    "DEFAULT_EPSILON", "ScaleByAmosState", "path_names", "scale_by_amos", "slot_shape",
    "GradientNormalizerState", "epoch_exponential_lr", "gradient_normalizer", "sigma_schedule", "sigma_values",
    "variance_schedule",
    "optimizer_state_bytes", "tree_bytes",
    "bert_eta_rules", "bert_shape_rules", "describe", "eta_fn", "flax_eta_rules", "flax_shape_rules",
    "mnist_cnn_eta_rules", "mnist_cnn_shape_rules", "params_fn", "shape_fn", "sigma_fn", "su_sigma_rules",
    "SuRulesState", "adam_su", "lion_equivalent", "lion_su", "r2_alpha0_p_from_half_life", "r2_schedule",
    "r3_kappa_from_half_life", "r3_schedule",
]
