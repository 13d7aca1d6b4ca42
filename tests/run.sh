#!/usr/bin/env bash
# Install everything the test suite needs, start its services, run pytest, stop the services.
# As root it also installs Debian packages (Chromium for the report test, SLURM for the
# executor tests); elsewhere those tests skip with their reason.
# pytest runs on BITBUDGET_TEST_WORKERS xdist workers (default 2, one per core; 0: in this
# process), prints the 25 slowest tests and writes a JUnit report to test-reports/junit.xml.
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

workers=${BITBUDGET_TEST_WORKERS:-2}
parallel=()
# one module's tests on one worker (they share its fixtures); SLURM and browser tests on one worker
[ "$workers" != 0 ] && parallel=(-n "$workers" --dist loadgroup)
mkdir -p test-reports
status=0
python -m pytest -p no:cacheprovider -q -rs --durations=25 --junitxml=test-reports/junit.xml "${parallel[@]}" "$@" \
  || status=$?
if [ "$status" = 5 ]; then  # pytest's "no tests collected": a run that tested nothing is a failure
  echo "tests/run.sh: pytest collected no tests (exit 5) from: ${*:-the whole suite}" >&2
fi
exit "$status"
