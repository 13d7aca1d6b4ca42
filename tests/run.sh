#!/usr/bin/env bash
# Install everything the test suite needs, start its services, run pytest, stop the services.
# As root it also installs Debian packages (Chromium for the report test, SLURM for the
# executor tests); elsewhere those tests skip with their reason.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[test]"

if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium chromium-driver >/dev/null
  bash tests/slurm/start.sh
  trap 'bash tests/slurm/stop.sh' EXIT
fi
if [ -x envs/install.sh ] && [ "${BITBUDGET_SKIP_VLLM:-0}" != 1 ]; then
  bash envs/install.sh vllm
  bash envs/install.sh llmcompressor
fi

status=0
python -m pytest -p no:cacheprovider -q -rs "$@" || status=$?
if [ "$status" = 5 ]; then  # pytest's "no tests collected": a run that tested nothing is a failure
  echo "tests/run.sh: pytest collected no tests (exit 5) from: ${*:-the whole suite}" >&2
fi
exit "$status"
