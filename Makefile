# The README's two commands: `make run` (the main job) and `make test` (the suite). Each creates
# .venv and installs the package on first use, so a fresh clone needs nothing else.
VENV    ?= .venv
PY      := $(VENV)/bin/python
RLLIB   := $(VENV)/bin/rllib
STAMP   := $(VENV)/.installed
RESULTS ?= results
# The main job; override on the command line, e.g. `make run STOP='{"training_iteration": 5}'`.
RUN_YAML ?= tuned_examples/smac_8m_grsn.yaml
STOP     ?=
# Test files run this many at a time (pytest-xdist). Much of a serial run waits on Ray and subprocess
# start-up with a core idle; two workers keep both cores of a 2-core CI machine busy. --dist loadfile
# keeps each file on one worker, so a module fixture (a whole sweep) runs once. TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2

.PHONY: run test test-fast lint bench clean

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: here pip finds the CPU wheel on local disk; elsewhere pass an index of
	# CPU wheels, e.g. `make test TORCH_PIP_ARGS="--index-url <CPU wheel index>"`, to avoid a CUDA build.
	$(PY) -m pip install -q torch==2.13.0 $(TORCH_PIP_ARGS)
	# smax (JaxMARL on CPU) and mpe (mpe2): the embedded multi-agent backends of the main job and tests;
	# sweep: Optuna, for sweeps that search with it.
	$(PY) -m pip install -q -e ".[test,bench,smax,mpe,sweep]"
	touch $(STAMP)

run: $(STAMP)
	$(RLLIB) train file $(RUN_YAML) --storage-path $(RESULTS) $(if $(STOP),--stop '$(STOP)')
	$(RLLIB) evaluate "$$(ls -td $(RESULTS)/*/*/checkpoint_* | head -n 1)" --episodes 32

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

test-fast: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: $(STAMP)
	$(PY) -m benchmarks.ppo_throughput

clean:
	rm -rf $(VENV) $(RESULTS) .pytest_cache .ruff_cache
