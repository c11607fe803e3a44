#!/usr/bin/env bash
# The one test command: installs what it needs (tests/setup.sh), then runs every check:
# pytest (property, Xen-oracle, packaging and integration tests against real xenstored daemons),
# ansible-test integration, the version matrix (ansible-test sanity and units of every supported
# ansible-core release, the module code on every supported dom0 Python: tests/matrix.py), molecule
# scenarios, ansible-lint, the collection docs lint, the documentation site (tests/docs-site.sh) with
# its link check and a headless-Chromium look at it, the changelog lint, each benchmark in its
# quick mode (proof that it runs; figures only), and the real Xen host stage (tests/xenvm: Xen 4.17
# and a Debian dom0 under QEMU TCG, PV guests; docs/REAL-XEN-TESTS.md). That stage mostly waits on
# the emulated host, so it runs in the background beside the other steps; its log is printed
# when it ends. At the end: the matrix table and time per step.
#   ./tests/run-all.sh              every check; prints wall and CPU seconds per step at the end
#   ./tests/run-all.sh --bench      the full benchmarks only (figures; they assert nothing about speed)
#   ./tests/run-all.sh --real-xen   the whole real Xen host stage alone: two hosts (oxenstored, C
#                                   xenstored), the guest-kernel tests and measurements, the HVM
#                                   guest, molecule real_xen, the benchmark (the default run has its
#                                   core only: one host and test_real_xen.py, for CI's time)
#   ./tests/run-all.sh --no-real-xen   every check but the real Xen host stage (a quick local loop)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
mode=checks
case "${1:-}" in
  "") ;;
  --bench) mode=bench ;;
  --real-xen) mode=real_xen ;;
  --no-real-xen) mode=checks_only ;;
  *) echo "usage: $0 [--bench | --real-xen | --no-real-xen]" >&2; exit 2 ;;
esac
env_file=$(./tests/setup.sh | tail -n 1)
# shellcheck disable=SC1090
. "$env_file"

step() { printf '\n==== %s ====\n' "$*"; }
failed=()
timings=()
total_start=$SECONDS
times_file=$(mktemp)
matrix_table=""
trap 'rm -f "$times_file" ${matrix_table:+"$matrix_table"}' EXIT
child_cpu=0
update_child_cpu() {  # child_cpu = CPU seconds (user + sys) of the child processes waited for so far
  times > "$times_file"  # run in this shell: in a $(...) subshell it would see no children
  child_cpu=$(awk 'END { split($1, u, "m"); split($2, s, "m"); printf "%d", u[1] * 60 + u[2] + s[1] * 60 + s[2] }' \
    "$times_file")
}
run() {  # run NAME CMD...: keep going, report every failing step at the end
  local name=$1 start=$SECONDS cpu_start status=ok; shift
  update_child_cpu; cpu_start=$child_cpu
  step "$name"
  if ! "$@"; then status=FAILED; failed+=("$name"); fi
  echo "---- $name: $status ($((SECONDS - start)) s)"
  update_child_cpu
  timings+=("$(printf '%6d %6d  %s' $((SECONDS - start)) $((child_cpu - cpu_start)) "$name")")
}
finish() {
  if [ -s "${matrix_table:-}" ]; then
    printf '\n==== version matrix ====\n'
    cat "$matrix_table"
  fi
  printf '\n==== time per step (wall and CPU seconds; CPU counts the processes each step waited for) ====\n'
  printf '%6s %6s\n' wall cpu
  printf '%s\n' "${timings[@]}"
  update_child_cpu
  printf '%6d %6d  total\n' $((SECONDS - total_start)) "$child_cpu"
  if [ "$mode" = checks_only ]; then
    printf 'not run: the real Xen host stage (--no-real-xen)\n'
  fi
  printf 'load average now: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  if ((${#failed[@]})); then
    printf '\nFAILED: %s\n' "${failed[@]}"
    exit 1
  fi
  printf '\nAll checks passed.\n'
}

if [ "$mode" = bench ]; then
  ./tests/xenvm/build.sh > /dev/null  # bench_real_xen.py's host images
  for b in tests/benchmarks/bench_*.py; do
    run "benchmark $(basename "$b")" python "$b"
  done
  finish
fi

# The real Xen host (tests/xenvm/README.md): Xen 4.17 and a Debian PV dom0 inside QEMU (TCG),
# guests on it; two hosts, one per xenstored daemon (real_xen_stage below).
xen_stage=$(mktemp -d "${TMPDIR:-/tmp}/xen-disks-stage.XXXXXX")
xen_down() {
  local d
  for d in "$xen_stage"/*/; do [ -f "$d/state.json" ] && python3 tests/xenvm/vm.py down --dir "$d"; done
  rm -rf "$xen_stage"
}
trap 'xen_down; rm -f "$times_file" ${matrix_table:+"$matrix_table"}' EXIT
# Two hosts at once, one per xenstored daemon (each test file needs only one of them): the
# oxenstored host (Debian's default) runs test_real_xen.py (its 6.1 guest g61), then the molecule
# scenario and the benchmark; the C xenstored host runs test_guest_kernels.py (the 5.10 guest g510)
# and the tests of test_real_xen.py marked both_xenstored.
xen_boot() {  # xen_boot FLAVOUR: boot that host (retried inside)
  python3 tests/xenvm/vm.py up --dir "$xen_stage/$1" --xenstored "$1"
}
xen_pytest() {  # xen_pytest FLAVOUR PYTEST-ARGS...: tests/xenvm on that host
  local flavour=$1; shift
  XENVM_DIR=$xen_stage/$flavour python -m pytest -q -p no:randomly -rA --durations=0 "$@"
}
xen_off() {
  [ -f "$xen_stage/$1/state.json" ] && python3 tests/xenvm/vm.py down --dir "$xen_stage/$1"
  return 0
}
xen_oxenstored_host() {  # xen_oxenstored_host PYTEST-ARGS...
  local dir=$xen_stage/oxenstored status=0
  xen_boot oxenstored || return 1
  xen_pytest oxenstored "$@" || status=1
  XENVM_DIR=$dir molecule test -s real_xen || status=1
  XENVM_DIR=$dir python tests/benchmarks/bench_real_xen.py --quick || status=1
  xen_off oxenstored
  return $status
}
xen_c_host() {  # xen_c_host PYTEST-ARGS... (of test_guest_kernels.py): then both_xenstored
  local start=$SECONDS status=0
  if xen_boot xenstored; then
    xen_pytest xenstored "$@" || status=1
    xen_pytest xenstored tests/xenvm/test_real_xen.py -m both_xenstored || status=1
  else
    status=1
  fi
  xen_off xenstored
  echo "---- the C xenstored host took $((SECONDS - start)) s"
  return $status
}
xen_wait() {  # xen_wait PID LOG: its status, its log
  local status=0
  wait "$1" || status=1
  cat "$2"
  return $status
}
real_xen_stage() {  # real_xen_stage all|default
  run "real Xen host: images (tests/xenvm/build.sh, cached)" ./tests/xenvm/build.sh
  if [ "$1" = default ]; then
    # CI's budget holds one emulated host beside the other checks (two hosts and an empty cache
    # took over 20 minutes): the oxenstored host and test_real_xen.py, the end-to-end core
    run "real Xen host, oxenstored: tests/xenvm/test_real_xen.py" xen_core tests/xenvm/test_real_xen.py
    return
  fi
  xen_c_host tests/xenvm/test_guest_kernels.py > "$xen_stage/c-host.log" 2>&1 &
  local c_host=$!
  run "real Xen host, oxenstored: test_real_xen.py, test_hvm.py, molecule real_xen, benchmark --quick" \
    xen_oxenstored_host tests/xenvm/test_real_xen.py tests/xenvm/test_hvm.py
  run "real Xen host, C xenstored (at the same time): test_guest_kernels.py, the tests marked both_xenstored" \
    xen_wait "$c_host" "$xen_stage/c-host.log"
}
xen_core() {  # xen_core PYTEST-ARGS...: the oxenstored host, those tests, off
  local status=0
  xen_boot oxenstored || return 1
  xen_pytest oxenstored "$@" || status=1
  xen_off oxenstored
  return $status
}

if [ "$mode" = real_xen ]; then
  real_xen_stage all  # every test: the measurements of what Linux, QEMU and xl do, the HVM guest
  finish
fi

# The default run: the stage in a background subshell (its own log, step times and failures,
# taken into this shell's when it ends).
if [ "$mode" = checks ]; then
  xen_log=$xen_stage/stage.log xen_times=$xen_stage/stage.times xen_failed=$xen_stage/stage.failed
  (
    times_file=$xen_stage/stage.cpu  # its own: `times` runs in each shell
    real_xen_stage default
    printf '%s\n' "${timings[@]}" > "$xen_times"
    printf '%s\n' "${failed[@]}" > "$xen_failed"
  ) > "$xen_log" 2>&1 &
  xen_pid=$!
  # The stage is the longest path of the run and mostly waits on the emulated host: ahead of the
  # other checks for the CPU (its later children, QEMU included, inherit this). Root only.
  renice -n -5 -p "$xen_pid" > /dev/null 2>&1 || true
  xen_start=$SECONDS
  printf 'real Xen host stage: started in the background (log printed when it ends)\n'
fi
collect_real_xen_stage() {
  [ "$mode" = checks ] || return 0
  step "real Xen host stage (ran in the background since the start; waiting $((SECONDS - xen_start)) s in)"
  wait "$xen_pid" || true
  cat "$xen_log"
  echo "---- real Xen host stage: ended $((SECONDS - xen_start)) s after its start"
  local line
  while IFS= read -r line; do [ -n "$line" ] && timings+=("$line (background)"); done < "$xen_times"
  while IFS= read -r line; do [ -n "$line" ] && failed+=("$line"); done < "$xen_failed"
  if [ ! -s "$xen_times" ]; then failed+=("real Xen host stage (ended without its step times)"); fi
}

# ansible-test needs a real .../ansible_collections/xen/disks directory (a symlinked cwd resolves to
# the checkout): copy the files git would ship into a scratch layout, one per checkout, refreshed
# before each ansible-test step. ansible-test keeps its virtual environments in ~/.ansible/test and
# in tests/output/ of the copy, both reused by later runs.
key=$(printf '%s' "$here" | sha1sum | cut -c1-12)
scratch=$XEN_DISKS_CACHE/ansible-test/$key/ansible_collections/xen/disks
ansible_test() {
  mkdir -p "$scratch"
  # The files git would ship (.gitignore rules), deleting what the checkout no longer has; the
  # copy's tests/output (ansible-test's venvs and results) is kept.
  rsync -a --delete --exclude=/.git --exclude=/tests/output/ --filter=':- .gitignore' ./ "$scratch/"
  # hypothesis's database of failing examples (binary files) from an earlier units step: sanity
  # would read it as the collection's
  rm -rf "$scratch/.hypothesis"
  (cd "$scratch" && ansible-test "$@" --color no)
}
# pytest-xdist: two workers (every daemon, directory and port is per test; builds are atomic).
workers=2

run "pytest (oracle, packaging, integration, demo)" \
  python -m pytest -q -p no:randomly -n "$workers" tests/integration tests/demo
# The long suites run once, on the suite's own ansible-core; sanity and units run for every
# ansible-core release and dom0 Python in the version matrix (tests/matrix.py), two cells at a time.
run "ansible-test integration" ansible_test integration --venv --python 3.11
matrix_table=$(mktemp)
run "version matrix (ansible-core x controller Python, module code x dom0 Python)" \
  python tests/matrix.py --jobs "$workers" --table "$matrix_table"
docs_site=$XEN_DISKS_CACHE/docs-site/$key
run "docs site build (antsibull-docs, Sphinx: warnings are errors)" ./tests/docs-site.sh "$docs_site"
run "docs site links and headless Chromium" \
  env XEN_DISKS_DOCS_SITE="$docs_site/build/html" python -m pytest -q -p no:randomly tests/docs
run "molecule" molecule test --all --exclude real_xen
run "ansible-lint" ansible-lint --profile production --offline
run "collection docs lint" antsibull-docs lint-collection-docs --plugin-docs .
run "changelog lint" antsibull-changelog lint
run "changelog.yaml lint" antsibull-changelog lint-changelog-yaml changelogs/changelog.yaml
for b in tests/benchmarks/bench_*.py; do
  [ "$b" = tests/benchmarks/bench_real_xen.py ] && continue  # needs the real Xen host: in its stage
  run "benchmark $(basename "$b") --quick" python "$b" --quick
done
collect_real_xen_stage

finish
