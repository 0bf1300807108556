// vfsvm-fuse-sweep ENGINE VARIANT SHARE [kill|log|none]: every FUSE request
// a guest can send, through the file server `vfsvm serve` builds, under the
// seccomp filter `vfsvm serve` installs.
//
// Before the filter, as serve does it: prepares SHARE (an empty directory:
// files, a directory, a fifo, a symlink, a setuid file, xattrs), gives
// itself supplementary groups, enters
// the namespace sandbox on it, builds the file server with
// `makeFileServer` (ENGINE uring or sync; VARIANT `default` is serve's
// defaults, `options` turns on xattr, writeback, direct I/O, noatime,
// cache=always, uid/gid translation and serve's -d request log; `plain` names inodes by O_PATH fds
// only, with cache=never, no READDIRPLUS, no killpriv-v2 and no submount
// marks; `readonly` is a read-only share with xattrs, where every write
// must come back EROFS), drops capabilities and applies
// the filter (default kill) with `applySeccomp` (`kill-without:N`: the
// same list less call N). Then it sends each
// request through the in-process FUSE client and prints one line per
// request with what came back. A system call missing from the allow-list
// ends the process by SIGSYS with the reporter's line naming it
// ("... is not on the sandbox's allow-list"); a reply other than the one
// expected is an "UNEXPECTED" line and exit 1 (so the sweep cannot pass by
// answering everything with an error before reaching the host). Exit 0:
// every request was answered as expected. Run by
// VfsvmSandboxTests/FUSESweepTests.
import CVfsvmLinux
import Glibc
import Synchronization
import VfsvmConfig
import VfsvmFUSE
import VfsvmFUSETestSupport
import VfsvmFileServer
import VfsvmMemory
import VfsvmSys

let arguments = CommandLine.arguments
let modeArgument = arguments.count == 5 ? arguments[4] : "kill"
/// `kill-without:N`: the filter lacks call N (for the test that shows the
/// sweep notices a missing call).
let withoutCall = modeArgument.hasPrefix("kill-without:") ? Int32(modeArgument.dropFirst("kill-without:".count)) : nil
guard arguments.count == 4 || arguments.count == 5,
      let engine = IOEngineChoice(rawValue: arguments[1]),
      ["default", "options", "plain", "readonly"].contains(arguments[2]),
      let mode = withoutCall != nil ? .kill : SeccompMode(named: modeArgument) else {
    logLine("usage: vfsvm-fuse-sweep uring|sync default|options|plain|readonly SHARE [kill|log|none|kill-without:N]")
    exit(2)
}
let variant = arguments[2]
let shareDir = arguments[3]
let optionsVariant = variant == "options"

@Sendable func fail(_ line: String) -> Never {
    logLine("vfsvm-fuse-sweep: \(line)")
    exit(1)
}

// MARK: - The share, before the sandbox

/// A file of `bytes` at `path` (relative to the share).
func makeFile(_ path: String, _ bytes: [UInt8], mode: mode_t = 0o644) {
    let fd = Glibc.open(shareDir + "/" + path, O_WRONLY | O_CREAT | O_TRUNC, mode)
    guard fd >= 0 else { fail("cannot create \(path): errno \(errno)") }
    guard bytes.withUnsafeBytes({ Glibc.write(fd, $0.baseAddress, $0.count) }) == bytes.count else { fail("cannot write \(path)") }
    fchmod(fd, mode)
    close(fd)
}

func prepare() {
    var st = stat()
    guard stat(shareDir, &st) == 0, st.st_mode & 0o170000 == 0o040000 else { fail("\(shareDir) is not a directory") }
    // Requests from a non-root guest user create files here too.
    chmod(shareDir, 0o777)
    makeFile("file", [UInt8](repeating: 0x61, count: 65536))
    // Data, a hole, data: for SEEK_DATA/SEEK_HOLE.
    makeFile("sparse", Array("start".utf8))
    let sparse = Glibc.open(shareDir + "/sparse", O_WRONLY)
    _ = Array("end".utf8).withUnsafeBytes { pwrite(sparse, $0.baseAddress, 3, 4 << 20) }
    close(sparse)
    makeFile("suid", Array("setuid".utf8), mode: 0o6755)
    makeFile("victim", Array("victim".utf8))
    makeFile("other", Array("other".utf8))
    guard mkdir(shareDir + "/dir", 0o755) == 0 else { fail("mkdir dir: errno \(errno)") }
    makeFile("dir/inner", Array("inner".utf8))
    guard mkfifo(shareDir + "/fifo", 0o644) == 0 else { fail("mkfifo: errno \(errno)") }
    guard mkdir(shareDir + "/mnt", 0o755) == 0 else { fail("mkdir mnt: errno \(errno)") }
    guard symlink("file", shareDir + "/link") == 0 else { fail("symlink: errno \(errno)") }
    let value = Array("sweep".utf8)
    guard setxattr(shareDir + "/file", "user.sweep", value, value.count, 0) == 0 else { fail("setxattr: errno \(errno)") }
    guard lsetxattr(shareDir + "/fifo", "trusted.sweep", value, value.count, 0) == 0 else { fail("lsetxattr: errno \(errno)") }
}

prepare()
// A serve started from a login with supplementary groups: each request
// that takes the caller's ids then saves, clears and restores them
// (getgroups/setgroups, FSCredentials).
let groups: [gid_t] = [0, 27, 100]
guard setgroups(groups.count, groups) == 0 else { fail("setgroups: errno \(errno)") }

// MARK: - The file server, as `vfsvm serve` builds and confines it

nonisolated(unsafe) var settings = ServeSettings()
settings.sharedDir = shareDir
if optionsVariant {
    settings.xattr = true
    settings.writeback = true
    settings.allowDirectIO = true
    settings.preserveNoatime = true
    settings.announceSubmounts = true
    settings.cache = .always
    do {
        settings.uidTranslation = [try IDTranslationRule(parsing: "map:1000:1000:100", option: "--translate-uid"),
                                   try IDTranslationRule(parsing: "forbid-guest:5000:1", option: "--translate-uid")]
        settings.gidTranslation = [try IDTranslationRule(parsing: "map:1000:1000:100", option: "--translate-gid")]
    } catch { fail("\(error)") }
}
let readOnlyVariant = variant == "readonly"
if readOnlyVariant {
    settings.readOnly = true
    settings.xattr = true
}
if variant == "plain" {
    settings.inodeFileHandles = .never
    settings.cache = .never
    settings.killprivV2 = false
    settings.announceSubmounts = false
}
let confined: Sandbox.Share
do {
    // As serve does: the share opened once (a symlinked path refused), the
    // sandbox built from that fd.
    let shareFD = try ShareDirectory.open(shareDir)
    confined = try Sandbox.enterNamespace(root: shareDir, rootFD: shareFD, readOnly: readOnlyVariant)
} catch { fail("\(error)") }
// A file system mounted inside the share (in the sandbox's own mount
// namespace, so it goes away with the process): submount marks, file
// handles of another mount, EXDEV.
// (Not in `readonly`, whose sweep does not go there.)
if !readOnlyVariant, mount("vfsvm-sweep", "/mnt", "tmpfs", 0, "size=4m") != 0 { fail("mount tmpfs on the share's mnt: errno \(errno)") }
let server: FUSEServer
// `options` also logs every request, as serve's -d does.
do {
    server = try makeFileServer(settings: settings, engine: engine, trace: optionsVariant, confined: confined)
} catch { fail("\(error)") }
do { try Sandbox.dropCapabilities(keeping: settings.capabilities, procSelfFD: confined.procSelfFD) } catch { fail("\(error)") }
do {
    if let withoutCall {
        try Seccomp.install(allowing: SeccompAllowList.fileServer(ioURing: engine == .uring).filter { $0 != withoutCall }, onViolation: .kill)
    } else {
        try applySeccomp(mode, ioURing: engine == .uring)
    }
} catch { fail("\(error)") }
logLine("vfsvm-fuse-sweep: \(engine.rawValue) engine, \(variant) options, seccomp \(mode.rawValue): filter in place")

// MARK: - Requests (Requests.swift, Sweep.swift, ReadOnlySweep.swift)

nonisolated(unsafe) let client = Client(server)
nonisolated(unsafe) var requests = 0
nonisolated(unsafe) var unexpected = 0

// The requests run on a thread started after the filter (as the virtio-fs
// queue threads are), which also covers thread creation and exit.
do {
    let thread = try OSThread(name: "vfsvm-sweep") { readOnlyVariant ? sweepReadOnly() : sweep() }
    thread.join()
} catch { fail("cannot start a thread: \(error)") }
if unexpected > 0 { fail("\(unexpected) of \(requests) requests answered unexpectedly") }
logLine("vfsvm-fuse-sweep: \(requests) requests, every one answered as expected")
exit(0)
