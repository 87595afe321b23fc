"""The optimizer arms of kexue 9344: Amos (official rules), AdamW, AdamW + Su's R3 rule."""
from __future__ import annotations

import math

import optax

from research.optim import amos as amos_lib
from research.optim import su_rules

ARM_LABEL = {"amos": "Amos", "adamw": "AdamW", "adamw_su_r3": "AdamW + Su R3"}


def make_arm(arm: str, c, num_steps: int, steps_per_epoch: int, eta_f, shape_f, sigma_f):
  """``(tx, info)`` of one arm; ``c`` holds the arm hyperparameters of the task's config."""
  if arm == "amos":
    xi = c.amos_lr if c.amos_lr > 0 else 1.0 / math.sqrt(steps_per_epoch)
    lr = optax.linear_schedule(0.0, xi, c.amos_warmup) if c.amos_warmup > 0 else xi
    tx = amos_lib.amos(lr, eta_f, shape_f, beta=c.amos_beta, clip_value=c.amos_clip,
                       momentum=c.amos_momentum if c.amos_momentum > 0 else None)
    return tx, {"xi": xi}
  if arm == "adamw":
    warm = max(1, int(c.adamw_warmup_frac * num_steps))
    sched = optax.join_schedules([optax.linear_schedule(0.0, c.adamw_lr, warm),
                                  optax.linear_schedule(c.adamw_lr, 0.0, max(1, num_steps - warm))], [warm])
    return optax.adamw(sched, weight_decay=c.adamw_weight_decay), {}
  if arm == "adamw_su_r3":
    hl = max(1.0, c.su_half_life_frac * num_steps)
    return su_rules.adam_su(c.su_alpha0, sigma_f, q=c.su_q, schedule="r3", half_life=hl), {"half_life": hl}
  raise ValueError(f"Unknown arm {arm!r}; valid: {sorted(ARM_LABEL)}")
