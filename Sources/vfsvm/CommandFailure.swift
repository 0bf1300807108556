import ArgumentParser
import VfsvmFileServer

/// A failure to report as one line and exit 1 (ArgumentParser prints
/// "Error: " + description).
struct CommandFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

extension IOEngineChoice: ExpressibleByArgument {}
