"""LFW and the training data made from it: the protocol files and splits, the aligned face cache,
the loader of people a model never saw, and identity-level pair sampling. No TensorFlow."""

from siamese.data.cache import FaceCache
from siamese.data.lfw import (
           LFW,
           DatasetError,
           Fold,
           ImageRef,
           Pair,
           assert_disjoint,
           check_disjoint,
           protocol_split,
           resolve_root,
)
from siamese.data.sampling import FaceSet, add_people, fixed_pairs, most_similar, sample_pairs, split_people
from siamese.data.unseen import lfw_crops, sample_refs, unseen_people

__all__ = ["LFW", "DatasetError", "FaceCache", "FaceSet", "Fold", "ImageRef", "Pair", "add_people",
           "assert_disjoint", "check_disjoint", "fixed_pairs", "lfw_crops", "most_similar", "protocol_split",
           "resolve_root", "sample_pairs", "sample_refs", "split_people", "unseen_people"]
