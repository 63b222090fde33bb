# webtext: `make demo` sets everything up and runs the whole pipeline offline;
# `make test` runs the test suite. Stage targets use $(CONFIG) when it exists,
# and otherwise run on the generated offline demo web in $(DEMO_DIR).

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
# torch comes from pip's index. TORCH_INDEX empty (the default) means pip's own
# configuration: on a stock Linux machine that is PyPI, whose torch==2.13.0 is the CUDA
# build (with several GB of NVIDIA libraries); here, on CI, pip is configured with a
# local CPU wheel. For the CPU-only build from PyTorch's own index:
#   make setup TORCH_INDEX=https://download.pytorch.org/whl/cpu     (or: make setup-cpu)
# setup installs once: to switch builds, `rm -r $(VENV)` first. The last line of setup
# says which build it installed (torch version, and CUDA version or "CPU build").
TORCH_SPEC  ?= torch==2.13.0
TORCH_INDEX ?=
TORCH_CPU_INDEX := https://download.pytorch.org/whl/cpu
WORKDIR  ?= work
DEMO_DIR ?= work/demo
CONFIG   ?= webtext.toml

ifeq ($(wildcard $(CONFIG)),)
  STAGES = $(BIN)/webtext --workdir $(DEMO_DIR) demo --until
  crawl_stages = extract
  dedup_stages = decontaminate
  shard_stages = shard
  train_stages = train
else
  STAGES = $(BIN)/webtext --workdir $(WORKDIR) --config $(CONFIG) run --stages
  crawl_stages = harvest,fetch,extract
  dedup_stages = dedup,decontaminate
  shard_stages = shard
  train_stages = train
endif

.PHONY: setup setup-cpu demo crawl dedup shard train refresh report screenshot test clean

setup: $(VENV)/.installed

setup-cpu:        ## setup with the CPU-only torch from PyTorch's index
	$(MAKE) setup TORCH_INDEX=$(TORCH_CPU_INDEX)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) )"$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
	@$(BIN)/python -c "import torch; c = torch.version.cuda; \
	  print('installed torch', torch.__version__, f'(CUDA {c} build)' if c else '(CPU build)')"
	touch $@

demo: setup
	$(BIN)/webtext --workdir $(DEMO_DIR) demo

crawl: setup      ## harvest + fetch + extract
	$(STAGES) $(crawl_stages)

dedup: setup      ## dedup + decontaminate
	$(STAGES) $(dedup_stages)

shard: setup
	$(STAGES) $(shard_stages)

train: setup
	$(STAGES) $(train_stages)

# docs/report.png from the demo's report; needs Debian's chromium (apt-get install chromium), not CI
screenshot:
	chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,1800 \
	  --screenshot=docs/report.png file://$(abspath $(DEMO_DIR))/reports/report.html

refresh: setup    ## one incremental update (exit 0 updated, 3 nothing new, 75 locked)
	$(BIN)/webtext --workdir $(if $(wildcard $(CONFIG)),$(WORKDIR) --config $(CONFIG),$(DEMO_DIR)) refresh

report: setup
	$(BIN)/webtext --workdir $(if $(wildcard $(CONFIG)),$(WORKDIR),$(DEMO_DIR)) report

test: setup
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO_DIR)
