"""research: JAX/Flax/optax implementations of eight articles by Su Jianlin (kexue.fm).

=====  ===================================================  ===============================================
post   article                                              where
=====  ===================================================  ===============================================
9085   Perturb-Max discrete distributions                   :mod:`research.distributions`, ``nn.heads``
9098   EXACT: training the accuracy directly                :mod:`research.losses` (``exact``, ``surrogates``),
                                                            ``optim.grad_normalizer``
9105   relative PEs cannot solve the zeros -> positions     :mod:`research.nn` (``attention``, ``position``),
       probe                                                ``tasks.probe``
9147   hubness; hub-prior GAN latent sampling               :mod:`research.geometry` (``knn``, ``hubness``,
                                                            ``hub_sampler``), ``nn.gan``, ``eval.generative``
9368   geodesic distance for semantic similarity            :mod:`research.geometry` (``graph``,
                                                            ``shortest_path``, ``geodesic``)
9344   training rules derived from Amos                     :mod:`research.optim` (``amos``, ``su_rules``,
                                                            ``rules``)
9444   length extrapolation via position robustness         ``nn.position_sampling``, ``tasks.che``
9341   CoSENT for cross-encoders                            :mod:`research.losses` (``cosent``),
                                                            ``nn.bert``, ``nn.cross_encoder``, ``eval.sts``
=====  ===================================================  ===============================================

Subpackages (each ``__init__`` re-exports its public API; ``help(research.<name>)`` is its reference):
``distributions``, ``losses``, ``optim``, ``nn``, ``geometry``, ``tasks``, ``data`` (loaders, ``batch_fn``),
``eval`` (metrics), ``train`` (``TrainState``, ``fit``, mesh and sharding); ``report`` holds the results
record that experiment drivers return. Subpackages are imported on first access, so ``import research``
is cheap::

    import research
    research.losses.cosent_loss(scores, labels)
"""
import importlib as _importlib
import importlib.util  # noqa: F401  (find_spec below)

__version__ = "0.1.0"

__all__ = ["data", "distributions", "eval", "geometry", "losses", "nn", "optim", "report", "tasks", "train"]
if _importlib.util.find_spec("research.special") is not None:
  __all__.append("special")


def __getattr__(name: str):
  if not name.startswith("_") and _importlib.util.find_spec(f"research.{name}") is not None:
    module = _importlib.import_module(f"research.{name}")
    globals()[name] = module
    return module
  raise AttributeError(f"module 'research' has no attribute {name!r}")


def __dir__():
  return sorted(set(globals()) | set(__all__))
