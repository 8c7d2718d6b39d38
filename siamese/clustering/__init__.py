"""Grouping faces into people: appearances from photos and videos (tracks), the clustering
algorithms (agglomerative by default, graph-based, DBSCAN), scores against true labels, and the
person folders and contact sheets a human labels from."""

from siamese.clustering.graph import ALGORITHMS, cluster_embeddings
from siamese.clustering.group import cluster, clustering_settings, group_tracks
from siamese.clustering.scores import bcubed_interval, bcubed_scores, clustering_scores, nmi, pairwise_scores

__all__ = ["ALGORITHMS", "bcubed_interval", "bcubed_scores", "cluster", "cluster_embeddings", "clustering_scores",
           "clustering_settings", "group_tracks", "nmi", "pairwise_scores"]
