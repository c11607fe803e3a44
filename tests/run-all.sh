#!/usr/bin/env bash
# The one test command: installs what it needs (tests/setup.sh), then runs every check:
# unit and property tests, Xen-oracle differential tests, integration tests against real
# xenstored daemons, ansible-test sanity, molecule scenarios, ansible-lint, changelog lint,
# and the benchmarks (which print figures; they assert nothing about speed).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
env_file=$(./tests/setup.sh | tail -n 1)
# shellcheck disable=SC1090
. "$env_file"

step() { printf '\n==== %s ====\n' "$*"; }
failed=()
run() {  # run NAME CMD...: keep going, report every failing step at the end
  local name=$1 start=$SECONDS; shift
  step "$name"
  if "$@"; then echo "---- $name: ok ($((SECONDS - start)) s)"
  else echo "---- $name: FAILED ($((SECONDS - start)) s)"; failed+=("$name"); fi
}

run "pytest (unit, property, oracle, integration)" python -m pytest -q -p no:randomly tests/unit tests/integration

sanity() {
  # ansible-test needs a real .../ansible_collections/xen/disks directory (a symlinked cwd resolves
  # to the checkout): copy the files git would ship into a scratch layout.
  local dest=$XEN_DISKS_CACHE/sanity/ansible_collections/xen/disks
  mkdir -p "$dest"
  git ls-files -z --cached --others --exclude-standard | rsync -a --delete --from0 --files-from=- ./ "$dest/"
  (cd "$dest" && ansible-test sanity --venv --python 3.11 --color no)
}
run "ansible-test sanity" sanity
run "molecule" molecule test --all
run "ansible-lint" ansible-lint --profile production --offline
run "changelog lint" antsibull-changelog lint

step "benchmarks (figures, not assertions)"
for b in tests/benchmarks/bench_*.py; do
  args=()
  # the fleet's no-op run is already timed by tests/integration/test_fleet.py; keep CI short
  [ "$(basename "$b")" = bench_fleet.py ] && args=(--apply-only)
  run "benchmark $(basename "$b")" python "$b" "${args[@]}"
done

if ((${#failed[@]})); then
  printf '\nFAILED: %s\n' "${failed[@]}"
  exit 1
fi
printf '\nAll checks passed.\n'
