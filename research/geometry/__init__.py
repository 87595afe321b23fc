"""Geometry of point clouds: exact kNN, k-occurrence and hubness (kexue.fm 9147); kNN graphs, shortest paths
and geodesic similarity (kexue.fm 9368).

* :mod:`~research.geometry.knn` -- exact k-nearest neighbours in JAX, chunked and sharded over devices with
  deterministic ties (``knn.knn``), :func:`knn_query`, and the k-occurrence
  ``N_k(x) = #{i : x in kNN_k(x_i)}`` (:func:`k_occurrence`).
* :mod:`~research.geometry.hubness` -- hubness measures of the k-occurrence distribution: skewness
  ``E[(N_k - k)^3] / std^3`` (:func:`k_skewness`), Robin Hood, Gini, Atkinson, anti-hub and hub
  occurrence (:func:`hubness_measures`), and the ball/cube volume ratio
  ``pi^(d/2) / (2^d Gamma(d/2 + 1))`` (:func:`log_volume_ratio`, :func:`monte_carlo_ball_in_cube`).
* :mod:`~research.geometry.hub_sampler` -- hub-prior latent sampling (keep latents whose k-occurrence
  exceeds a threshold): :func:`sample_hub_latents`, :class:`HubRule`.
* :mod:`~research.geometry.graph` -- kNN and epsilon graphs as edge lists: :class:`Graph`,
  :func:`knn_graph`, :func:`epsilon_graph`.
* :mod:`~research.geometry.shortest_path` -- single-source / all-pairs shortest paths (Bellman-Ford in JAX,
  Floyd-Warshall, Dijkstra via scipy): :func:`shortest_paths`, :func:`all_pairs`.
* :mod:`~research.geometry.geodesic` -- geodesic distance ``d_G(i, j)`` = shortest path on the kNN graph,
  turned into a similarity for theme scoring: :func:`geodesic_distance_matrix`, :func:`geodesic_scores`,
  :func:`text_geodesic_scores`.

Example::

    import numpy as np
    from research import geometry
    x = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    dist, idx = geometry.knn.knn(x, k=5)        # [64, 5] each, self excluded
    counts = geometry.k_occurrence(idx, n=64)   # N_5 of every point; sums to 5 * 64
"""
from research.geometry import geodesic, graph, hub_sampler, hubness, knn, shortest_path
from research.geometry.geodesic import (geodesic_distance_matrix, geodesic_scores, similarity_from_distance,
                                        text_geodesic_scores)
from research.geometry.graph import Graph, epsilon_graph, knn_graph
from research.geometry.hub_sampler import HubRule, sample_hub_latents
from research.geometry.hubness import (MEASURES, gini_index, hubness_measures, k_skewness, log_ball_volume,
                                       log_volume_ratio, monte_carlo_ball_in_cube, robinhood_index)
from research.geometry.knn import k_occurrence, knn_query, pairwise_cosine, pairwise_sqeuclidean
from research.geometry.shortest_path import all_pairs, connected_components, shortest_paths

__all__ = [
    "geodesic", "graph", "hub_sampler", "hubness", "knn", "shortest_path",
    "geodesic_distance_matrix", "geodesic_scores", "similarity_from_distance", "text_geodesic_scores",
    "Graph", "epsilon_graph", "knn_graph",
    "HubRule", "sample_hub_latents",
    "MEASURES", "gini_index", "hubness_measures", "k_skewness", "log_ball_volume", "log_volume_ratio",
    "monte_carlo_ball_in_cube", "robinhood_index",
    "k_occurrence", "knn_query", "pairwise_cosine", "pairwise_sqeuclidean",
    "all_pairs", "connected_components", "shortest_paths",
]
