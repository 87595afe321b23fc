"""Several players in one :class:`TrainState` (a GAN's generator and discriminator), each with its own
optimizer state.

``state.params`` is a dict ``{player: params, ...}`` (other entries, e.g. an EMA, are carried untouched) and
``state.opt_state`` is ``{player: tx.init(params[player])}``: one optimizer state per player, so each
player's Adam moments and step count advance only when that player is updated. (``optax.multi_transform``
with the other player's gradient zeroed would be wrong here: every call advances every inner Adam state,
decaying the idle player's moments and counting its steps twice.)

A custom ``train_step(state, batch) -> (state, metrics)`` for :func:`research.train.fit` or
:func:`research.train.fit_population` updates the players in turn with :func:`player_update` and then
increments ``state.step`` once; the trainers own the loop, logging, checkpoints and the NaN guard.
"""
from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import optax

from research.train.loop import TrainState

__all__ = ["all_finite", "create_players", "player_update"]


def create_players(*, params: dict, players: Sequence[str], tx: optax.GradientTransformation,
                   rng: jax.Array | int = 0) -> TrainState:
  """A :class:`TrainState` whose ``opt_state`` is ``{player: tx.init(params[player])}``."""
  missing = [p for p in players if p not in params]
  if missing:
    raise ValueError(f"players {missing} have no parameters; params has {sorted(params)}")
  base = TrainState.create(params={}, tx=tx, rng=rng)
  return base.replace(params=dict(params), opt_state={p: tx.init(params[p]) for p in players})


def player_update(state: TrainState, player: str, grads: Any) -> TrainState:
  """One optimizer step of ``player`` alone: ``params[player] += tx.update(grads, opt_state[player])``.

  Does not touch ``state.step`` (the caller increments it once per train step)."""
  if player not in state.opt_state:
    raise ValueError(f"unknown player {player!r}; players: {sorted(state.opt_state)}")
  updates, opt = state.tx.update(grads, state.opt_state[player], state.params[player])
  params = optax.apply_updates(state.params[player], updates)
  return state.replace(params={**state.params, player: params}, opt_state={**state.opt_state, player: opt})


def all_finite(*trees: Any) -> jax.Array:
  """True when every leaf of every tree is finite (a train step's ``finite`` metric)."""
  return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for t in trees for x in jax.tree.leaves(t)]))
