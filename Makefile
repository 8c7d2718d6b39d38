# siamese — every target sets up the local virtualenv first, so a fresh clone needs only
# Python 3.10+ and make.  `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SIAMESE := $(VENV)/bin/siamese
CANDIDATE = $(or $(OUT),data/candidates/$(notdir $(RUN:/=)))
SHIP = $(CANDIDATE)/ship
ARGS ?=
PREPARE_ARGS ?=

# LFW is found by every command the same way (siamese.data.lfw.resolve_root): data.root=... >
# $LFW_ROOT > data/lfw > ../shared/datasets/lfw beside this repo.

.DEFAULT_GOAL := help
.PHONY: help openvino lfw-only-keras quantize student-candidate student-alone student-alone-ship student-ship model-figures venv teacher jax serve-deps scale-deps index bench-index bench-cluster-parquet serve review bench-serve test test-browser test-slow test-slow-only data prepare teach teach-views teach-morphs distill detect collect train evaluate export unrestricted cluster ensemble bench-cluster gallery recognize openset bench-gallery enroll verify calibrate bench-verify bench-embed bench-clips bench-degraded bench clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# The distillation teacher (dlib-bin + face_recognition_models, ~105 MB): only where it is needed.
$(VENV)/.teacher: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,teacher]'
	@touch $@

# The HTTP API and review page (fastapi, uvicorn, python-multipart): `make serve` and the tests.
$(VENV)/.serve: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,serve]'
	@touch $@

# Ray Data + pyarrow: `siamese index` and reading an index (cluster / gallery import from Parquet).
$(VENV)/.scale: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,scale]'
	@touch $@

# The JAX backend (jax[cpu]): KERAS_BACKEND=jax training, train.distribution=data_parallel and its tests.
$(VENV)/.jax: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,jax]'
	@touch $@

# OpenVINO (~60 MB): the shipped model in bfloat16, `model_path=bf16`, and its tests.
$(VENV)/.openvino: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[dev,openvino]'
	@touch $@

venv: $(VENV)/.installed ## create .venv and install the package with its dev tools

serve-deps: $(VENV)/.serve ## install the serve extra into .venv (make serve / test do it)

scale-deps: $(VENV)/.scale ## install the scale extra (ray[data], pyarrow) into .venv (make index / test do it)

teacher: $(VENV)/.teacher ## install the teacher extra into .venv (make teach / distill / test do it)

jax: $(VENV)/.jax ## install the jax extra into .venv (make test does it)

openvino: $(VENV)/.openvino ## install the openvino extra (model_path=bf16) into .venv (make test does it)

test: teacher serve-deps scale-deps jax openvino ## lint, then run the fast test suite (what CI runs; two processes, a file each)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 --dist loadfile $(ARGS)

test-browser: serve-deps ## the review page in headless Chromium (needs chromium + chromium-driver)
	$(PY) -m pytest -m browser $(ARGS)

test-slow: teacher serve-deps scale-deps jax openvino ## run the slow tests too (full-LFW checks, subprocess training)
	$(PY) -m pytest -m "not browser" $(ARGS)

test-slow-only: teacher serve-deps scale-deps jax openvino ## only the slow tests (CI runs them after `make test`)
	$(PY) -m pytest -m slow $(ARGS)

data: venv ## get LFW into data/lfw (link a local copy, else download with checksums)
	$(SIAMESE) data fetch

prepare: venv ## detect + align all of LFW into data/cache (resumable; ARGS=hydra overrides)
	$(SIAMESE) prepare $(ARGS)

detect: venv ## faces in INPUT (photo/folder/video) -> OUT/crops + OUT/manifest.csv
	@test -n "$(INPUT)" -a -n "$(OUT)" || { echo "usage: make detect INPUT=photos/ OUT=faces/"; exit 2; }
	$(SIAMESE) detect "$(INPUT)" --out "$(OUT)" $(ARGS)

index: scale-deps ## every face of INPUT (photos/videos) -> OUT.parquet rows with embeddings (Ray; resumable)
	@test -n "$(INPUT)" -a -n "$(OUT)" || { echo "usage: make index INPUT=photos/ OUT=library.parquet [ARGS=backend=local]"; exit 2; }
	$(SIAMESE) index "$(INPUT)" --out "$(OUT)" $(ARGS)

bench-index: scale-deps ## siamese index with a local Ray on 2 CPUs vs siamese detect on 10k LFW photos (ARGS=index.images=N)
	$(SIAMESE) bench index $(ARGS)

bench-cluster-parquet: scale-deps ## clustering 1M synthetic embeddings read from Parquet: time, peak memory
	$(SIAMESE) bench cluster-parquet $(ARGS)

collect: venv ## capture PERSON's face from SOURCE (camera index or video) into data/faces/
	@test -n "$(PERSON)" || { echo "usage: make collect PERSON=alice [SOURCE=0]"; exit 2; }
	$(SIAMESE) collect "$(or $(SOURCE),0)" --person "$(PERSON)" $(ARGS)

teach: teacher ## the distillation teacher's embedding of every LFW image (resumable, ~13 min) + its model dir
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) teach $(ARGS)

teach-views: teacher ## also one harder view of every LFW image through the teacher (resumable, ~20 min), for distill.views_p
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) teach views=1 $(ARGS)

teach-morphs: teacher ## also two blends of each View 1 training image with another person's, through the teacher (resumable; 60 min at low priority beside a training run), for distill.morphs_p
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) teach morphs=2 $(ARGS)

teach-extra: teacher ## your own photos and videos (DIR=...) through the teacher, unlabelled, for distill.extra=DIR (resumable)
	@test -n "$(DIR)" || { echo "error: say which folder: make teach-extra DIR=path/to/photos" >&2; exit 1; }
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) teach extra=$(DIR) $(ARGS)

distill: teacher ## the distilled CPU recipe (+experiment=distill; the teacher cache first), < 90 min on 2 cores
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) teach
	$(SIAMESE) train +experiment=distill $(ARGS)

train: venv ## build the LFW cache if needed, then train (resumes if re-run; ARGS=overrides)
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) train $(ARGS)

evaluate: venv ## evaluate MODEL (default: the shipped model) on LFW View 1 + View 2; ARGS=overrides
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) evaluate $(if $(MODEL),"$(MODEL)") $(ARGS)

export: venv ## export RUN (a training run dir) to .keras/SavedModel/ONNX/TFLite + model card
	@test -n "$(RUN)" || { echo "usage: make export RUN=checkpoints/<run> [ARGS=out=DIR]"; exit 2; }
	$(SIAMESE) export "$(RUN)" $(ARGS)

unrestricted: venv ## LFW View 2 unrestricted: ten trainings (hours on CPU; ARGS=+experiment=smoke to check)
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) unrestricted $(ARGS)

cluster: venv ## group the faces in INPUT (photo folder or video) by person -> OUT/person_NNN/
	@test -n "$(INPUT)" -a -n "$(OUT)" || { echo "usage: make cluster INPUT=photos/|clip.mp4 OUT=people/"; exit 2; }
	$(SIAMESE) cluster "$(INPUT)" --out "$(OUT)" $(ARGS)

ensemble: venv ## combine trained models into one: make ensemble OUT=checkpoints/ens MODELS="run1 run2 ..."
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) ensemble "$(OUT)" models="[$(shell echo $(MODELS) | tr ' ' ',')]" $(ARGS)

quantize: venv ## fit MODEL's int8 network (~3x faster on a CPU) on faces of its training people -> quantization.json
	@test -n "$(MODEL)" || { echo "usage: make quantize MODEL=checkpoints/RUN/model|ENSEMBLE_DIR (then: siamese ensemble OUT models=[...] precision=int8)"; exit 2; }
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) quantize "$(MODEL)" $(ARGS)

student-candidate: venv ## the new-student rule (docs/distill.md): RUN's network rounded (BITS) beside the shipped LFW-only member, scored on validation people only
	@test -n "$(RUN)" || { echo "usage: make student-candidate RUN=checkpoints/<run> [BITS=10] [OUT=data/candidates/<run>]"; exit 2; }
	$(SIAMESE) prepare $(PREPARE_ARGS)
	test -d "$(CANDIDATE)/export" || $(SIAMESE) export "$(RUN)" formats=[onnx] out="$(CANDIDATE)/export"
	test -d "$(CANDIDATE)/rounded" || $(PY) tools/round_weights.py "$(CANDIDATE)/export" "$(CANDIDATE)/rounded" --bits $(or $(BITS),10)
	test -e "$(CANDIDATE)/ensemble/cluster.json" || $(SIAMESE) ensemble "$(CANDIDATE)/ensemble" 'models=[siamese/assets/default_model/members/1-lfw_only,$(CANDIDATE)/rounded]' overwrite=true
	$(PY) tools/val_pairs.py default "$(CANDIDATE)/ensemble"
	$(PY) tools/cluster_threshold_split.py default "$(CANDIDATE)/ensemble"

student-alone: venv ## the rule for the student alone (docs/distill.md): RUN's network rounded to 10 bits, calibrated, against the shipped default on validation people only
	@test -n "$(RUN)" || { echo "usage: make student-alone RUN=checkpoints/<run> [OUT=data/candidates/<run>]"; exit 2; }
	$(SIAMESE) prepare $(PREPARE_ARGS)
	test -d "$(CANDIDATE)/export" || $(SIAMESE) export "$(RUN)" formats=[onnx] out="$(CANDIDATE)/export"
	test -d "$(CANDIDATE)/alone" || { rm -rf "$(CANDIDATE)/alone.tmp" \
	  && $(PY) tools/round_weights.py "$(CANDIDATE)/export" "$(CANDIDATE)/alone.tmp" --bits 10 \
	  && $(SIAMESE) calibrate "$(CANDIDATE)/alone.tmp" 'fit=[verify,cluster,impostors]' overwrite=true \
	  && mv "$(CANDIDATE)/alone.tmp" "$(CANDIDATE)/alone"; }
	$(PY) tools/val_pairs.py default "$(CANDIDATE)/alone"
	$(PY) tools/cluster_threshold_split.py default "$(CANDIDATE)/alone" --centred
	$(PY) tools/val_openset.py default "$(CANDIDATE)/alone"
	$(SIAMESE) bench embed 'embed.models=[default,$(CANDIDATE)/alone]'

student-ship: venv ## once the rule chose RUN (make student-candidate): the shipped model rebuilt around its network, calibrated, with its int8 form, in CANDIDATE/ship (siamese/assets untouched)
	@test -n "$(RUN)" || { echo "usage: make student-ship RUN=checkpoints/<run> [OUT=data/candidates/<run>]"; exit 2; }
	@test -d "$(CANDIDATE)/rounded" || { echo "$(CANDIDATE)/rounded: missing — make student-candidate RUN=$(RUN) first"; exit 2; }
	@test ! -e "$(SHIP)" || { echo "$(SHIP): already exists — remove it to build it again"; exit 2; }
	rm -rf "$(CANDIDATE)/ship_src" && mkdir -p "$(CANDIDATE)/ship_src"
	cp -r siamese/assets/default_model/members/1-lfw_only "$(CANDIDATE)/ship_src/lfw_only"
	cp -r "$(CANDIDATE)/rounded" "$(CANDIDATE)/ship_src/distilled"
	$(SIAMESE) ensemble "$(SHIP)" 'models=[$(CANDIDATE)/ship_src/lfw_only,$(CANDIDATE)/ship_src/distilled]' copy_members=true
	$(SIAMESE) calibrate "$(SHIP)/members/2-distilled" 'fit=[verify,cluster,recognize,impostors]' overwrite=true
	$(SIAMESE) calibrate "$(SHIP)" 'fit=[verify,cluster,recognize,impostors]' overwrite=true
	$(SIAMESE) quantize "$(SHIP)/members/2-distilled"
	$(SIAMESE) ensemble "$(SHIP)/int8" 'models=[$(SHIP)/members/1-lfw_only,$(SHIP)/members/2-distilled]' precision=int8
	$(SIAMESE) calibrate "$(SHIP)/int8" 'fit=[verify,cluster,recognize,impostors]' overwrite=true
	$(PY) tools/val_pairs.py "$(SHIP)" "$(SHIP)/int8"
	$(SIAMESE) bench embed 'embed.models=[$(SHIP),$(SHIP)/int8]'
	@find "$(SHIP)" -type f | xargs du -cb | tail -1 | sed 's|total|bytes in $(SHIP) as it would be tracked (<= 20,000,000 asked)|'

student-alone-ship: venv ## once the student-alone rule chose RUN (make student-alone): the default model rebuilt as that network alone, with its int8 form and the LFW-only network, in CANDIDATE/ship_alone (siamese/assets untouched)
	@test -n "$(RUN)" || { echo "usage: make student-alone-ship RUN=checkpoints/<run> [OUT=data/candidates/<run>]"; exit 2; }
	@test -d "$(CANDIDATE)/alone" || { echo "$(CANDIDATE)/alone: missing — make student-alone RUN=$(RUN) first"; exit 2; }
	@test ! -e "$(CANDIDATE)/ship_alone" || { echo "$(CANDIDATE)/ship_alone: already exists — remove it to build it again"; exit 2; }
	rm -rf "$(CANDIDATE)/ship_alone.tmp" && cp -r "$(CANDIDATE)/alone" "$(CANDIDATE)/ship_alone.tmp"
	mkdir -p "$(CANDIDATE)/ship_alone.tmp/members" && cp -r siamese/assets/default_model/members/1-lfw_only "$(CANDIDATE)/ship_alone.tmp/members/1-lfw_only"
	$(SIAMESE) quantize "$(CANDIDATE)/ship_alone.tmp"
	$(SIAMESE) calibrate "$(CANDIDATE)/ship_alone.tmp" 'fit=[recognize]' overwrite=true
	$(SIAMESE) ensemble "$(CANDIDATE)/ship_alone.tmp/int8" 'models=[$(CANDIDATE)/ship_alone.tmp]' precision=int8
	$(SIAMESE) calibrate "$(CANDIDATE)/ship_alone.tmp/int8" 'fit=[verify,cluster,recognize,impostors]' overwrite=true
	mv "$(CANDIDATE)/ship_alone.tmp" "$(CANDIDATE)/ship_alone"
	$(PY) tools/val_pairs.py "$(CANDIDATE)/ship_alone" "$(CANDIDATE)/ship_alone/int8"
	$(SIAMESE) bench embed 'embed.models=[default,$(CANDIDATE)/ship_alone,$(CANDIDATE)/ship_alone/int8]'
	@find "$(CANDIDATE)/ship_alone" -type f | xargs du -cb | tail -1 | sed 's|total|bytes in $(CANDIDATE)/ship_alone as it would be tracked (<= 20,000,000 asked)|'

model-figures: venv ## every application figure of MODEL (dir or shipped name) into OUT, resumable; only after a rule chose it
	@test -n "$(MODEL)" || { echo "usage: make model-figures MODEL=dir|default|int8 [OUT=data/figures/<name>] [STEPS=evaluate,openset,...]"; exit 2; }
	$(PY) tools/model_figures.py "$(MODEL)" $(if $(OUT),--out "$(OUT)") $(if $(STEPS),--steps "$(STEPS)")

bench-cluster: venv ## clustering algorithms on unseen LFW people, then 10k/100k-face time + memory
	$(SIAMESE) bench cluster $(ARGS)
	$(SIAMESE) bench cluster-scale $(ARGS)

enroll: venv ## enrol PERSON into the gallery from SOURCE (camera index, video, photo or folder)
	@test -n "$(PERSON)" || { echo "usage: make enroll PERSON=alice [SOURCE=0|clip.mp4|photos/]"; exit 2; }
	$(SIAMESE) enroll "$(or $(SOURCE),0)" --person "$(PERSON)" $(ARGS)

verify: venv ## is PERSON in front of SOURCE (camera index, video, URL)? window, or video + jsonl
	@test -n "$(PERSON)" || { echo "usage: make verify PERSON=alice [SOURCE=0|clip.mp4]"; exit 2; }
	$(SIAMESE) verify "$(or $(SOURCE),0)" --person "$(PERSON)" $(ARGS)

calibrate: venv ## fit MODEL's verification threshold (verify.json), clustering settings and 1:N's centring (cluster.json), stranger bank
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) calibrate $(if $(MODEL),"$(MODEL)") overwrite=true $(ARGS)

bench-verify: venv ## FPS and ms per stage of live verification on the Hamilton sample clip
	$(SIAMESE) bench verify $(ARGS)

gallery: venv ## known-faces gallery: ACTION=import|add|list|remove|reembed|calibrate [SRC=..] [PERSON=..]
	$(SIAMESE) gallery $(or $(ACTION),list) $(if $(SRC),"$(SRC)") $(if $(PERSON),--person "$(PERSON)") $(ARGS)

recognize: venv ## name the faces in INPUT (photo or folder) against the gallery, or "unknown"
	@test -n "$(INPUT)" || { echo "usage: make recognize INPUT=photos/ [ARGS=json=true]"; exit 2; }
	$(SIAMESE) recognize "$(INPUT)" $(ARGS)

openset: venv ## open-set identification on unseen LFW people: top-1/5, DIR@FAR 1%/10%, unknowns accepted
	$(SIAMESE) prepare $(PREPARE_ARGS)
	$(SIAMESE) openset $(ARGS)

bench-gallery: venv ## gallery at 1M embeddings: 10k-add, insert/load time, ms per query
	$(SIAMESE) bench gallery $(ARGS)

bench-embed: venv ## ms per face embedded, batched and single, for MODELS="dir1 dir2" (default: the shipped model)
	$(SIAMESE) bench embed $(if $(MODELS),embed.models="[$(shell echo $(MODELS) | tr ' ' ',')]") $(ARGS)

bench-clips: venv ## verification on the Hamilton clip and clustering of the news clip, as numbers (MODEL=...)
	$(SIAMESE) bench clips $(if $(MODEL),model_path="$(MODEL)") $(ARGS)

bench-degraded: venv ## calibrated thresholds' false accepts on a degraded copy of unseen LFW people (MODEL=...)
	$(SIAMESE) bench degraded $(if $(MODEL),model_path="$(MODEL)") $(ARGS)

bench: venv ## print detection ms per image and the LFW cache build time
	$(SIAMESE) bench detect $(ARGS)

clean: ## remove the virtualenv and Python caches (never data/ or checkpoints/)
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

bench-serve: serve-deps ## HTTP latency / throughput of siamese serve: 500 verify + 500 identify, 8 at a time
	$(SIAMESE) bench serve $(ARGS)

serve: serve-deps ## the HTTP API on 127.0.0.1:8000 (docs at /docs; ARGS=port=9000 api_key=...)
	$(SIAMESE) serve $(ARGS)

review: serve-deps ## review + label a `siamese cluster` result DIR in the browser (127.0.0.1:8000/review)
	@test -n "$(DIR)" || { echo "usage: make review DIR=people/ [ARGS=port=9000]"; exit 2; }
	$(SIAMESE) review "$(DIR)" $(ARGS)

LFW_ONLY_JSON := siamese/assets/default_model/members/1-lfw_only/model.json
lfw-only-keras: ## the LFW-only network's Keras weights before rounding (24 MB, not in the tree) from git history -> checkpoints/lfw_only_keras/, hash-checked
	$(PYTHON) tools/restore_from_history.py siamese/assets/default_model/embedding.keras --to checkpoints/lfw_only_keras/embedding.keras \
	  --model-json $(LFW_ONLY_JSON)
