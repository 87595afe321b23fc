"""Synthetic tasks: the zeros -> positions probe (kexue.fm 9105) and the Chomsky-hierarchy (CHE) suite used
for length extrapolation (kexue.fm 9444).

* :mod:`~research.tasks.probe` -- the probe of 9105: an input of ``n`` zeros between [CLS]/[SEP] whose
  target at position ``i`` is ``i`` itself; a purely relative encoding sees identical contexts at every
  position, so its accuracy is bounded by :func:`theory` (``1/n`` up to ties). Entry points:
  :func:`make_probe`, :func:`theory`, :func:`tie_aware_accuracy`.
* :mod:`~research.tasks.che` -- the CHE tasks of Deletang et al. (ICLR 2023), trained on lengths
  ``<= train_max_length`` and tested on longer ones: :func:`get_task` / ``TASKS``, :func:`sample`,
  :func:`to_model_batch`, :func:`masked_accuracy`, :func:`curriculum_sampler`.

Example::

    from research import tasks
    probe = tasks.make_probe(8)      # dict of numpy arrays: the n = 8 probe's inputs and targets
    sorted(tasks.TASKS)[:3]          # CHE task names
"""
from research.tasks import che, probe
from research.tasks.che import TASKS, Batch, Task, curriculum_sampler, get_task, masked_accuracy, sample, to_model_batch
from research.tasks.probe import make_probe, theory, tie_aware_accuracy

__all__ = [
    "che", "probe",
    "TASKS", "Batch", "Task", "curriculum_sampler", "get_task", "masked_accuracy", "sample", "to_model_batch",
    "make_probe", "theory", "tie_aware_accuracy",
]
