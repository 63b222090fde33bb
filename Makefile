# webtext: `make demo` sets everything up and runs the whole pipeline offline;
# `make test` runs the test suite. Stage targets use $(CONFIG) when it exists,
# and otherwise run on the generated offline demo web in $(DEMO_DIR).

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
# The CPU wheel of torch; use TORCH_SPEC=torch for a CUDA build on a GPU machine.
TORCH_SPEC ?= torch==2.13.0
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

.PHONY: setup demo crawl dedup shard train refresh report screenshot test clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[test]"
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
