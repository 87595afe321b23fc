"""Helpers shared by every config file."""
from __future__ import annotations

import ml_collections


def base_config(experiment: str, variant: str, variants: dict | None = None) -> ml_collections.ConfigDict:
  """The keys every experiment config has.

  Args:
    experiment: driver module name, ``experiments/<experiment>.py``.
    variant: the variant name selected with ``--config=configs/<file>.py:<variant>``.
    variants: the config's ``VARIANTS`` dict; when given, an unknown variant raises with the valid list.
  """
  if variants is not None and variant not in variants:
    raise ValueError(
        f"Unknown variant {variant!r} for config {experiment!r}; valid variants: {sorted(variants)}")
  cfg = ml_collections.ConfigDict()
  cfg.experiment = experiment
  cfg.variant = variant
  cfg.seed = 0
  cfg.data_dir = ml_collections.FieldReference(None, field_type=str)
  # CPU hosts: split the CPU into this many JAX devices before the run (-1: one per core, 0: JAX's
  # default of one device) so the batch shards over the cores; see research.train.set_cpu_devices.
  cfg.cpu_devices = 0
  return cfg
