import FuzzSupport

/// Seeds after QEMU 7.2's vhost-user-fs handshake (what the QEMU front-end
/// test and HostileFrontendTests send): features, owner, memory table,
/// rings set up and started, stopped, GET_CONFIG, memory slots, reset; and
/// a few hostile ones (fd kinds, sizes, indices).
enum VhostUserSeeds {
    typealias M = VhostUserFuzzMessage
    static let userBase: UInt64 = 0x7f00_0000_0000

    static func words(_ values: [UInt64], u32First: Int = 0) -> [UInt8] {
        var w = FuzzInputWriter()
        for (i, v) in values.enumerated() {
            if i < u32First { w.u32(UInt32(truncatingIfNeeded: v)) } else { w.u64(v) }
        }
        return w.bytes
    }

    static func memTable(size: UInt64 = 64 << 10, pages: UInt8 = 16) -> M {
        M(request: 5, payload: words([1, 0, 0, size, userBase, 0], u32First: 2), fds: [.memfd(pages: pages, content: [])])
    }

    static func ring(_ index: UInt64, size: UInt64 = 8, base: UInt64 = 0) -> [M] {
        [
            M(request: 8, payload: words([index, size], u32First: 2)),
            M(request: 9, payload: words([index, 0, userBase + 0x1000, userBase + 0x3000, userBase + 0x2000, 0], u32First: 2)),
            M(request: 10, payload: words([index, base], u32First: 2)),
            M(request: 13, payload: words([index]), fds: [.eventfd]),
            M(request: 12, payload: words([index]), fds: [.eventfd]),
            M(request: 18, payload: words([index, 1], u32First: 2)),
        ]
    }

    static func handshake(features: UInt64) -> [M] {
        [
            M(request: 1),
            M(request: 3),
            M(request: 15),
            M(request: 16, payload: words([1 << 0 | 1 << 3 | 1 << 9 | 1 << 13 | 1 << 15])),
            M(request: 17),
            M(request: 2, needReply: true, payload: words([features | 1 << 30])),
        ]
    }

    static var all: [(name: String, bytes: [UInt8])] {
        let version1: UInt64 = 1 << 32, packed: UInt64 = 1 << 34
        var seeds: [(String, [UInt8])] = []
        seeds.append(("qemu-split", M.encode(handshake(features: version1) + [memTable()] + ring(0) + ring(1)
            + [M(request: 11, payload: words([1, 0], u32First: 2)), M(request: 24, payload: words([0, 36, 0], u32First: 3) + [UInt8](repeating: 0, count: 36))])))
        seeds.append(("qemu-packed", M.encode(handshake(features: version1 | packed | 1 << 29) + [memTable()] + ring(0, size: 5, base: 0x8000_8000)
            + [M(request: 18, payload: words([0, 0], u32First: 2))])))
        seeds.append(("mem-slots", M.encode(handshake(features: version1) + [
            M(request: 36),
            M(request: 37, payload: words([0, 32 << 10, userBase, 0]), fds: [.memfd(pages: 8, content: [1, 2, 3])]),
            M(request: 37, payload: words([32 << 10, 32 << 10, userBase + (32 << 10), 0]), fds: [.memfd(pages: 8, content: [])]),
            M(request: 38, payload: words([0, 32 << 10, userBase, 0]), fds: [.memfd(pages: 1, content: [])]),
        ] + ring(0) + [M(request: 34), M(request: 4)])))
        seeds.append(("hostile-fds", M.encode(handshake(features: version1) + [
            memTable(size: 1 << 20, pages: 1),
            M(request: 13, payload: words([0]), fds: [.pipeWrite]),
            M(request: 12, payload: words([0]), fds: [.pipeRead]),
            M(request: 14, payload: words([0]), fds: [.devNull]),
            M(request: 12, payload: words([1 | 1 << 8])),
            M(request: 12, payload: words([7]), fds: [.socket, .eventfd]),
            M(request: 8, payload: words([0, 3], u32First: 2)),
        ])))
        var badSize = M(request: 5, payload: [])
        badSize.rawSize = 0xffff_ffff
        seeds.append(("bad-header", M.encode([M(request: 1), badSize])))
        return seeds
    }
}
