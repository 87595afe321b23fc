"""Driver of configs/geodesic.py: tests of kexue 9368's claim that kNN-graph geodesics fix far distances.

Parts (``config.parts``): ``sanity`` (sphere, swiss roll: :mod:`.sanity`), ``retrieval`` (digits /
Fashion-MNIST near vs far, and class-centroid themes: :mod:`.retrieval`), ``sts`` and ``summarization``
(MiniLM text: :mod:`.text`), ``bench`` (shortest-path solvers vs scipy: :mod:`.bench`). Rows are judged by
:mod:`.tables` with the shared verdict rule; figures are in :mod:`.figures`. The article publishes no numbers.
"""
from __future__ import annotations

import os
import sys
import time

from experiments.geodesic import bench, figures, retrieval, sanity, tables, text
from research.report import Results

PARTS = ("sanity", "retrieval", "sts", "summarization", "bench")


def _part(name: str, config, workdir: str, res: Results) -> None:
  g = config.graph
  if name == "sanity":
    sph, sw = sanity.sphere(config.sanity, g, config.seed), sanity.swiss(config.sanity, g, config.seed)
    tables.sanity_rows(config.sanity, g, sph, sw, res)
    figures.sanity_figures(config.sanity, sph, sw, workdir, res)
  elif name == "retrieval":
    found = {}
    for ds in config.retrieval.datasets:
      found[ds] = retrieval.measure(ds, config.retrieval, g, config.data_dir, config.seed)
      tables.retrieval_rows(ds, config.retrieval, g, found[ds], res)
    figures.retrieval_figure(found, workdir, res)
  elif name == "sts":
    tables.sts_rows(config.sts, config.encoder, g, text.sts(config.sts, config.encoder, g, config.data_dir,
                                                            config.seed), res)
  elif name == "summarization":
    c, found = config.summarization, {}
    for ds in c.datasets:
      found[ds] = dict(text.summarization(ds, c, config.encoder, g, config.data_dir, config.seed), split=c.split)
      tables.summarization_rows(ds, c, found[ds], res)
    figures.summarization_figure(found, workdir, res)
  elif name == "bench":
    tables.bench_rows(config.bench, bench.measure(config.bench, config.seed), res)


def run(config, workdir: str) -> Results:
  os.makedirs(workdir, exist_ok=True)
  res = Results(title="kexue 9368: geodesic (kNN graph + shortest path) vs base distance")
  unknown = [p for p in config.parts if p not in PARTS]
  if unknown:
    raise ValueError(f"Unknown part(s) {unknown} in config.parts; valid: {PARTS}")
  for part in config.parts:
    t = time.perf_counter()
    print(f"[geodesic] {part} ...", file=sys.stderr, flush=True)
    _part(part, config, workdir, res)
    res.add(f"{part}_seconds", time.perf_counter() - t)
    print(f"[geodesic] {part} done in {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
  res.notes.append(
      "The article (kexue 9368) publishes no numbers; the 'published' column states its qualitative claim "
      "(geodesic fixes far distances), tested against the base distance measured in the same run. Verdicts "
      "follow research.verdict: paired differences (geodesic - base) over independent seeds (sanity), disjoint "
      "query folds (retrieval), pair folds (STS) or entities (summaries), mean ± 95% t-interval; 'agrees' needs "
      "the whole interval on the claimed side, 'inconclusive' when it contains 0. Graphs are "
      f"`{config.graph.mode}` kNN graphs with Euclidean edge lengths (on unit MiniLM vectors for text). "
      "Unreachable points (d_geo = inf) rank after all reachable ones, ordered by base distance. Geodesics are "
      "transductive: they depend on the pool of points in the graph.")
  return res
