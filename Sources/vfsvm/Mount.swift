import ArgumentParser
import VfsvmConfig

struct Mount: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve a host directory through /dev/fuse at a mount point on the host (foreground).",
        discussion: "Example: vfsvm mount --share /srv/data /mnt/data -o ro,cache=never"
    )

    @Option(name: .long, help: ArgumentHelp("The host directory to serve.", valueName: "HOSTDIR"))
    var share: String

    @Argument(help: "Where to mount it.")
    var mountpoint: String

    @Option(name: .customShort("o"), help: ArgumentHelp("Mount options: ro, cache=never|auto|always, xattr, no_xattr, ...", valueName: "OPTIONS"))
    var options: [String] = []

    func validate() throws {
        var settings = ServeSettings()
        do {
            for o in options { try settings.apply(OptionList(parsing: o)) }
        } catch { throw ValidationError(error.description) }
    }

    func run() throws {
        throw notImplemented("vfsvm mount", "the /dev/fuse server has not landed yet.")
    }
}
