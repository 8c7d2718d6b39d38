"""A photo and video library as a face index: every face's source, frame, box, landmarks, quality
and embedding as rows of Parquet shards (`siamese index`), built by a Ray Data pipeline or in one
process, resumable shard by shard; and the readers that `siamese cluster` and `siamese gallery
import` stream it with (row groups, bounded memory). Ray and pyarrow are the `scale` extra: they are
imported only when an index is built or read."""

from siamese.library.plan import Shard, plan_shards
from siamese.library.table import COLUMNS, IndexRows, open_index, require_extra

__all__ = ["COLUMNS", "IndexRows", "Shard", "open_index", "plan_shards", "require_extra"]
