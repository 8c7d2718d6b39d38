"""Writes notebooks/explore_lfw.ipynb from the cells below (`python notebooks/make_notebooks.py`).

Kept as a script so a change to the notebook is a readable diff; the test suite executes the
generated notebook top to bottom.
"""

from pathlib import Path

import nbformat as nbf

CELLS = [
    ("md", """# Exploring LFW with `siamese`

LFW overview, protocol pairs, augmentation, the embedding map of a trained model, and its ROC.
Everything comes from the package; this notebook defines no reusable code. It runs on a small
slice of LFW (`N_PEOPLE` people) so it finishes in seconds; raise it for a fuller picture."""),
    ("code", """import os, tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from hydra.utils import instantiate
from omegaconf import OmegaConf

from siamese.data import LFW, cache
from siamese.eval import plots
from siamese.eval.evaluate import lfw_pair_scores
from siamese.model import Embedder

REPO = Path.cwd() if (Path.cwd() / "conf").exists() else Path.cwd().parent
N_PEOPLE = 12          # people with the most images, for the embedding map
N_PAIRS = 60           # View 1 test pairs (half same), for the ROC
lfw = LFW(os.environ.get("LFW_ROOT") or None)
print(lfw.root)"""),
    ("md", "## LFW at a glance: most people have one photo"),
    ("code", """refs = lfw.images()
people, counts = np.unique([r.person for r in refs], return_counts=True)
print(f"{len(refs)} images of {len(people)} people; {np.sum(counts >= 2)} people have 2+ images")
plt.figure(figsize=(6, 3))
plt.hist(counts, bins=np.logspace(0, np.log10(counts.max() + 1), 30), log=True)
plt.xscale("log"); plt.xlabel("images per person"); plt.ylabel("people"); plt.show()"""),
    ("md", "## Detect and align a small slice (the same cache `make prepare` builds for all of LFW)"),
    ("code", """top = [people[i] for i in np.argsort(-counts)[:N_PEOPLE]]
pairs = lfw.pairs("view1_test")
pairs = [p for p in pairs if p.same][: N_PAIRS // 2] + [p for p in pairs if not p.same][: N_PAIRS // 2]
mapped = [x for p in top for x in [r for r in refs if r.person == p][:20]]  # up to 20 of each person
wanted = mapped + [r for p in pairs for r in (p.a, p.b)]
cache_dir = Path(tempfile.mkdtemp()) / "cache"
cache.build(lfw, cache_dir, {"_target_": "siamese.faces.YuNetDetector"}, size=112, workers=2,
            refs=list(set(wanted)), progress=False)
fc = cache.load(cache_dir)
grid = np.concatenate([np.concatenate(list(fc.images[i * 10:(i + 1) * 10]), 1) for i in range(3)], 0)
plt.figure(figsize=(12, 4)); plt.imshow(grid); plt.axis("off"); plt.show()"""),
    ("md", "## Protocol pairs: View 1 test, same person (top) and different people (bottom)"),
    ("code", """images, idx, same = fc.pair_faces(pairs)
show = np.r_[np.flatnonzero(same)[:6], np.flatnonzero(~same)[:6]]
fig, axes = plt.subplots(2, 6, figsize=(12, 4.5))
for ax, i in zip(axes.ravel(), show):
    ax.imshow(np.concatenate([images[idx[i, 0]], images[idx[i, 1]]], 0)); ax.axis("off")
plt.show()"""),
    ("md", "## Augmentation (`conf/augment/strong.yaml`), applied to training images only"),
    ("code", """augment = instantiate(OmegaConf.load(REPO / "conf" / "augment" / "strong.yaml"), _convert_="all")
augment.set_random_seed(0)
face = fc.images[0]
plt.figure(figsize=(12, 2))
plt.imshow(np.concatenate([face] + [augment(image=face)["image"] for _ in range(7)], 1)); plt.axis("off"); plt.show()"""),
    ("md", "## Embedding map: the shipped model's embeddings of the slice's people (PCA to 2-D)"),
    ("code", """from sklearn.decomposition import PCA

model = Embedder.load(REPO / "siamese" / "assets" / "default_model")
rows = fc.rows(mapped)
emb = model.embed(model.prepare(fc.images[rows]))
xy = PCA(2).fit_transform(emb)
names = np.array([r.person for r in mapped])
assert set(names) == set(top)  # everyone in the legend is on the map
plt.figure(figsize=(7, 5))
for k, p in enumerate(top):  # ten colours, then the same colours as triangles
    m = names == p
    plt.scatter(xy[m, 0], xy[m, 1], s=14, marker="o^s"[k // 10 % 3], label=f"{p.replace('_', ' ')} ({m.sum()})")
plt.legend(fontsize=6, ncol=2); plt.title(f"{model.format} embeddings, {len(rows)} faces"); plt.show()"""),
    ("md", "## ROC on the slice's View 1 test pairs (the full evaluation: `make evaluate`)"),
    ("code", """scored = lfw_pair_scores(model, lfw, fc, pairs)
out = plots.roc({"View 1 slice": (scored.scores, scored.same)}, Path(tempfile.mkdtemp()) / "roc.png")
plt.figure(figsize=(5, 4.2)); plt.imshow(plt.imread(out)); plt.axis("off"); plt.show()
print("accuracy at the model's threshold:", np.mean((scored.scores >= model.threshold) == scored.same))"""),
]


def main() -> None:
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
                for kind, src in CELLS]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbf.write(nb, Path(__file__).with_name("explore_lfw.ipynb"))


if __name__ == "__main__":
    main()
