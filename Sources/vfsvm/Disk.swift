import ArgumentParser
import VfsvmConfig
import VfsvmVirtioBlk

// `--disk FILE[:ro]` for `vfsvm run`: the spec parsed from the command line
// and the virtio-blk device built from it. Run.swift adds the option and
// appends `makeDiskDevice` results to the machine's devices (after the
// shares, so the first disk's DSDT entry and /dev/vda follow them).

/// Parses one `--disk` value (for `validate()`: a bad value is one clear
/// line before anything starts).
func parseDisk(_ text: String) throws(ValidationError) -> DiskSpec {
    do { return try DiskSpec(parsing: text) } catch { throw ValidationError(error.description) }
}

/// Why a disk could not be attached, as the one line the user sees.
struct DiskError: Error, CustomStringConvertible {
    let description: String
}

/// Opens the disk's image (O_DIRECT where the host file system allows it,
/// io_uring where the kernel allows it) and builds its virtio-blk device
/// with `requestQueues` queues. A missing, unreadable or too small image,
/// or a read-write disk on a read-only file, is one sentence.
func makeDiskDevice(_ spec: DiskSpec, requestQueues: Int = 1) throws(DiskError) -> VirtioBlockDevice {
    let image: BlockImage
    do {
        image = try BlockImage(path: spec.path, readOnly: spec.readOnly)
    } catch {
        if case let .open(_, e) = error, !spec.readOnly, e.errno == .EACCES || e.errno == .EROFS {
            throw DiskError(description: "\(error) (attach it read-only with --disk \(spec.path):ro)")
        }
        throw DiskError(description: error.description)
    }
    do {
        return try VirtioBlockDevice(image: image, requestQueues: requestQueues)
    } catch {
        throw DiskError(description: "disk \(spec.path): \(error)")
    }
}
