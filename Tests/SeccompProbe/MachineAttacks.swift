// vfsvm-seccomp-probe machine confined|unconfined SHARE SECRET: what code
// running in `vfsvm run --accel kvm`'s process after its confinement (a
// compromised device model or FUSE server: the attacker) can read of
// SECRET, a host file outside the share SHARE. `confined` confines as
// `vfsvm run` does (RunKVM.swift, RunSandbox.swift): the machine
// namespace with SHARE as its one share, the capabilities a writable
// share keeps, the VMM's seccomp filter; `unconfined` skips all three, to
// show each attack works where nothing stops it. A child (setpriv ...
// sleep) is the host process whose /proc/PID/root the "procfs" attack
// climbs to. One line per attack on
// stdout: "attack NAME: read TEXT" or "attack NAME: ERRNO".
import CVfsvmURing
import Glibc
import VfsvmConfig
import VfsvmSys

func runMachineAttacks(confined: Bool, share: String, secret: String) -> Never {
    let shareFD: FileDescriptor
    do { shareFD = try ShareDirectory.open(share) } catch {
        logLine("vfsvm-seccomp-probe: \(error)")
        exit(1)
    }
    // What an attacker would forge (on ext4: an inode number and a
    // generation, 2 and 0 for the root directory); taken here, before the
    // confinement, so the test does not depend on the host file system.
    let handle = try? FileDescriptor.open(secret, HostFSFlag.path).kernelFileHandle()
    // A host process the attacker may look into through procfs: same uid,
    // no capabilities (what /proc/PID/root's ptrace check asks).
    let neighbour: ChildProcess
    do {
        neighbour = try ChildProcess(path: "/usr/bin/setpriv", arguments: ["--bounding-set=-all", "--inh-caps=-all", "sleep", "3"])
    } catch {
        logLine("vfsvm-seccomp-probe: cannot start setpriv: \(error)")
        exit(1)
    }
    _ = neighbour  // not killed: the filter has no kill(2); it ends by itself
    var procSelfFD: FileDescriptor
    do { procSelfFD = try FileDescriptor.open("/proc/self/fd", HostFSFlag.path | O_DIRECTORY) } catch {
        logLine("vfsvm-seccomp-probe: \(error)")
        exit(1)
    }
    var root = shareFD
    if confined {
        do {
            let machine = try Sandbox.enterMachineNamespace([Sandbox.MachineShare(path: share, fd: shareFD, readOnly: false)])
            root = machine.shares[0].root
            procSelfFD = machine.procSelfFD
            try Sandbox.dropCapabilities(keeping: ServeSettings().capabilities, procSelfFD: machine.procSelfFD)
            try Seccomp.install(allowing: SeccompAllowList.vmm(), ioctls: SeccompAllowList.vmmIoctlRequests, onViolation: .kill)
        } catch {
            logLine("vfsvm-seccomp-probe: \(error)")
            exit(1)
        }
    }
    func attack(_ name: String, _ open: () throws(SystemError) -> FileDescriptor) {
        do {
            let fd = try open()
            let text = String(decoding: try fd.readSome(limit: 256), as: UTF8.self)
            print("attack \(name): read \(text.split(separator: "\n").first ?? "")")
        } catch {
            print("attack \(name): \(error.errno)")
        }
    }
    // An absolute path, as if the share's root were never involved.
    attack("path") { () throws(SystemError) in try FileDescriptor.open(secret, O_RDONLY) }
    // ".." from the share's root, past where the FUSE core would stop.
    let up = String(repeating: "../", count: 40) + secret.drop(while: { $0 == "/" })
    attack("dotdot") { () throws(SystemError) in try root.openAt(Array(up.utf8), flags: O_RDONLY, beneath: false) }
    // A file handle opened from the share's mount (needs CAP_DAC_READ_SEARCH;
    // the mount is named by a real open of the share, not an O_PATH fd).
    attack("handle") { () throws(SystemError) in
        guard let handle else { throw SystemError("name_to_handle_at(\(secret))", .EOPNOTSUPP) }
        let mount = try root.openAt(Array(".".utf8), flags: O_RDONLY | O_DIRECTORY, beneath: false)
        return try mount.openByHandle(handle, flags: O_RDONLY)
    }
    // An io_uring ring of the attacker's own: its OPENAT runs past seccomp.
    let r = vfsvm_uring_openat_probe(secret, 0)
    print(r >= 0 ? "attack uring: opened" : "attack uring: \(Errno(rawValue: Int32(-r)))")
    // The neighbour's root through the procfs the file server keeps.
    usleep(100_000)  // setpriv has exec'd sleep
    let other = "../../\(neighbour.pid)/root/" + secret.drop(while: { $0 == "/" })
    attack("procfs") { () throws(SystemError) in try procSelfFD.openAt(Array(other.utf8), flags: O_RDONLY, beneath: false) }
    // A device node made in the share (CAP_MKNOD is kept for the guest's
    // mknod): /dev/null's numbers here, a disk's in a real attack.
    attack("mknod") { () throws(SystemError) in
        _ = try sysCall("mknodat") { mknodat(root.rawValue, "attack-node", S_IFCHR | 0o600, dev_t((1 << 8) | 3)) }
        defer { unlinkat(root.rawValue, "attack-node", 0) }
        return try root.openAt(Array("attack-node".utf8), flags: O_RDONLY, beneath: false)
    }
    // The share itself still works.
    attack("share") { () throws(SystemError) in try root.openAt(Array("inside".utf8), flags: O_RDONLY) }
    exit(0)
}
