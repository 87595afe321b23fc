"""research: JAX/Flax/optax implementations of eight articles by Su Jianlin (kexue.fm).

Subpackages: distributions, losses, optim, nn, geometry, tasks, data, eval, train; `report` holds the
results record that experiment drivers return.
"""
__version__ = "0.1.0"
