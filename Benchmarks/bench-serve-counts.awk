# bench-serve-counts.awk — FUSE requests per vfsvm-bench row, from a backend's
# per-request debug log (`vfsvm serve -d`: "fuse: lookup unique=.. node=N";
# virtiofsd -d: "opcode: LOOKUP (1), nodeid: N"). Used by bench-serve.sh --count.
#
#   awk -v backend=NAME -f bench-serve-counts.awk BACKEND-LOG
#
# Prints "backend<TAB>row<TAB>opcode<TAB>count" lines (opcode "ALL": requests
# with a reply, i.e. guest round trips; FORGET and BATCH_FORGET, which have
# none, are listed but not in ALL).
#
# Rows are found by their directory operations, not by node IDs (a node the
# guest forgets after drop_caches comes back under a new ID): outside a row,
# a MKDIR below the share's root (not vfsvm-bench's work directory, made on
# node 1) opens the meta, tree and tar rows in that order, and a CREATE opens
# the data rows; a row ends when as many RMDIRs as MKDIRs (data: UNLINKs as
# CREATEs) were seen in it. Inside the tree row the build runs until the
# first OPENDIR, the walk (the timed part) until the first UNLINK, then the
# removal; inside the data rows seq-write runs until the first OPEN,
# seq-read-cold until the second, randread-4k-qd1 after it. The walk segment
# also holds remove_tree's first two OPENDIR+READDIRPLUS (before it unlinks
# anything), a handful of requests; FORGETs fall where the backend logged them.
function seg_of() {
    if (row == "tree") return "tree-" tpart
    if (row == "data") return dpart
    return row
}
{
    op = ""; node = ""
    if (match($0, /fuse: [a-z_]+ unique=[0-9]+ node=[0-9]+/)) {
        split(substr($0, RSTART, RLENGTH), f, /[ =]/)
        op = toupper(f[2]); node = f[6]
    } else if (match($0, /opcode: [A-Z_]+ \([0-9]+\), nodeid: [0-9]+/)) {
        split(substr($0, RSTART, RLENGTH), f, /[ ,]+/)
        op = f[2]; node = f[5]
    }
    if (op == "") next
    if (row == "" && op == "MKDIR" && node != 1) {
        nmk++; row = nmk == 1 ? "meta" : nmk == 2 ? "tree" : nmk == 3 ? "tar" : "other"
        tpart = "build"; depth = 1; count(op); next
    }
    if (row == "" && op == "CREATE" && node != 1) { row = "data"; dpart = "seq-write"; nopen = 0; depth = 1; count(op); next }
    if (row == "data") { if (op == "CREATE") depth++; else if (op == "UNLINK") depth-- }
    else if (row != "") { if (op == "MKDIR") depth++; else if (op == "RMDIR") depth-- }
    if (row != "" && depth == 0) { count(op); row = ""; next }
    if (row == "tree" && tpart == "build" && op == "OPENDIR") tpart = "walk"
    if (row == "tree" && tpart == "walk" && op == "UNLINK") tpart = "remove"
    if (row == "data" && op == "OPEN") { nopen++; dpart = nopen == 1 ? "seq-read-cold" : "randread-4k-qd1" }
    count(op)
}
function count(op,   s) {
    s = row == "" ? "outside-rows" : seg_of()
    n[s SUBSEP op]++
    if (op != "FORGET" && op != "BATCH_FORGET") n[s SUBSEP "ALL"]++
    if (!(s in seen)) { seen[s] = 1; order[++ns] = s }
}
END {
    for (k in n) { split(k, p, SUBSEP); print backend "\t" p[1] "\t" p[2] "\t" n[k] }
}
