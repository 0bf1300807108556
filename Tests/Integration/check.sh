# check.sh — the PASS/FAIL lines and totals every integration script prints,
# in one place. Sourced (POSIX sh: the guest's busybox sh sources it too,
# through guest-workload.sh):
#
#   ok NAME              PASS: NAME
#   bad NAME [WHY]       FAIL: NAME (WHY)
#   skip NAME WHY        SKIP: NAME (WHY)
#   check NAME CMD...    ok when CMD succeeds, else bad with its last output
#   refuse NAME CMD...   ok when CMD fails, else bad
#   summary WHO          "WHO: N passed, N failed[, N skipped]"; status 1
#                        when anything failed
#
# CHECK_LOG=FILE also appends each line to FILE (the guest's results file).
pass=0 fail=0 skipped=0

check_say() {
    echo "$*"
    if [ -n "${CHECK_LOG:-}" ]; then echo "$*" >> "$CHECK_LOG"; fi
}

ok() { pass=$((pass + 1)); check_say "PASS: $1"; }
bad() { fail=$((fail + 1)); check_say "FAIL: $1${2:+ ($2)}"; }
skip() { skipped=$((skipped + 1)); check_say "SKIP: $1${2:+ ($2)}"; }

check() {
    check_name=$1; shift
    if check_out=$("$@" 2>&1); then ok "$check_name"; else bad "$check_name" "$(echo "$check_out" | tail -3 | tr '\n' ' ' | cut -c1-400)"; fi
}

refuse() {
    check_name=$1; shift
    if "$@" > /dev/null 2>&1; then bad "$check_name" "unexpectedly succeeded"; else ok "$check_name"; fi
}

summary() {
    if [ "$skipped" -gt 0 ]; then
        check_say "$1: $pass passed, $fail failed, $skipped skipped"
    else
        check_say "$1: $pass passed, $fail failed"
    fi
    [ "$fail" -eq 0 ]
}
