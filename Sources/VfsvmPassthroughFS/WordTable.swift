/// A table keyed by a number this server hands out itself (node ids, file
/// handles): a Dictionary whose key hashes with one multiply and shift
/// instead of SipHash (~90 instructions a probe, one or more probes per
/// request). SipHash guards a table against keys chosen to collide; these
/// keys are the server's own counters, which a client can only name, not
/// choose. Keys a client can influence (host inode numbers, names) stay in
/// ordinary dictionaries.
struct WordTable<Value>: ExpressibleByDictionaryLiteral {
    struct Word: Hashable {
        let word: UInt64
        static func == (a: Word, b: Word) -> Bool { a.word == b.word }
        func hash(into h: inout Hasher) { h.combine(word) }
        // What Dictionary calls: a Fibonacci multiply of the word and the
        // table's seed, its high bits folded down (buckets are the low bits).
        func _rawHashValue(seed: Int) -> Int {
            let x = (word ^ UInt64(UInt(bitPattern: seed))) &* 0x9E37_79B9_7F4A_7C15
            return Int(truncatingIfNeeded: x ^ (x >> 32))
        }
    }

    private var table: [Word: Value] = [:]

    typealias Key = UInt64

    init() {}
    init(dictionaryLiteral elements: (UInt64, Value)...) {
        for (k, v) in elements { table[Word(word: k)] = v }
    }

    subscript(key: UInt64) -> Value? {
        get { table[Word(word: key)] }
        // In place, as Dictionary's own subscript changes a value.
        _modify { yield &table[Word(word: key)] }
    }

    typealias Index = Dictionary<Word, Value>.Index
    func index(forKey key: UInt64) -> Index? { table.index(forKey: Word(word: key)) }

    var count: Int { table.count }
    var isEmpty: Bool { table.isEmpty }
    /// Changed in place through an `index(forKey:)` like Dictionary's.
    var values: Dictionary<Word, Value>.Values {
        get { table.values }
        _modify { yield &table.values }
    }
    var keys: [UInt64] { table.keys.map(\.word) }

    @discardableResult
    mutating func removeValue(forKey key: UInt64) -> Value? { table.removeValue(forKey: Word(word: key)) }
    mutating func removeAll() { table.removeAll() }

    /// Every entry, as (key, value) pairs in no particular order.
    var entries: [(key: UInt64, value: Value)] { table.map { (key: $0.key.word, value: $0.value) } }
}
