import CLibXML2
import Synchronization

/// One XML element as plain Swift values: what the domain mapping reads,
/// copied out of libxml2's tree so nothing above this file touches it.
public struct XMLElement: Equatable, Sendable {
    public var name: String
    /// The element's namespace URI (nil for none: all of libvirt's own
    /// elements).
    public var namespace: String? = nil
    public var attributes: [String: String]
    public var children: [XMLElement]
    /// The element's own text (its direct text and CDATA children),
    /// whitespace at both ends trimmed.
    public var text: String
    /// Line in the source document (0 when not known).
    public var line: Int

    public init(name: String, attributes: [String: String] = [:], children: [XMLElement] = [], text: String = "", line: Int = 0) {
        self.name = name
        self.attributes = attributes
        self.children = children
        self.text = text
        self.line = line
    }

    public subscript(_ attribute: String) -> String? { attributes[attribute] }

    /// The first child element of that name.
    public func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }

    public func children(_ name: String) -> [XMLElement] { children.filter { $0.name == name } }
}

/// What libxml2 reported while parsing or validating: each message as
/// `FILE:LINE: message`, in the order it came.
final class XMLErrorCollector {
    var messages: [String] = []
    let fileName: String

    init(fileName: String) { self.fileName = fileName }

    func add(_ error: UnsafePointer<xmlError>) {
        let e = error.pointee
        var text = e.message.map { String(cString: $0) } ?? "unknown libxml2 error"
        while text.last == "\n" || text.last == " " { text.removeLast() }
        messages.append(e.line > 0 ? "\(fileName):\(e.line): \(text)" : "\(fileName): \(text)")
    }

    /// A structured-error callback handing errors to the collector passed
    /// as its context.
    static let callback: xmlStructuredErrorFunc = { context, error in
        guard let context, let error else { return }
        Unmanaged<XMLErrorCollector>.fromOpaque(context).takeUnretainedValue().add(UnsafePointer(error))
    }
}

/// A parsed document, freed when the value goes away.
final class XMLDocumentHandle {
    let doc: xmlDocPtr

    init(_ doc: xmlDocPtr) { self.doc = doc }
    deinit { xmlFreeDoc(doc) }

    /// Parses `bytes` without network access, DTD loading or entity
    /// expansion; on failure the error carries libxml2's own messages.
    static func parse(_ bytes: [UInt8], fileName: String) throws(DomainError) -> XMLDocumentHandle {
        LibXML.initialize()
        let collector = XMLErrorCollector(fileName: fileName)
        let context = Unmanaged.passUnretained(collector).toOpaque()
        xmlSetStructuredErrorFunc(context, XMLErrorCollector.callback)
        defer { xmlSetStructuredErrorFunc(nil, nil) }
        let options = Int32(XML_PARSE_NONET.rawValue | XML_PARSE_NOCDATA.rawValue)
        let doc: xmlDocPtr? = withExtendedLifetime(collector) {
            bytes.withUnsafeBufferPointer { buf in
                buf.baseAddress.flatMap { base in
                    base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                        xmlReadMemory($0, Int32(clamping: buf.count), fileName, nil, options)
                    }
                }
            }
        }
        guard let doc else {
            throw .invalidXML(fileName, collector.messages.isEmpty ? ["\(fileName): not an XML document (it is empty)"] : collector.messages)
        }
        return XMLDocumentHandle(doc)
    }

    /// The root element copied into Swift values.
    func root() -> XMLElement? {
        guard let node = xmlDocGetRootElement(doc) else { return nil }
        return Self.copy(node)
    }

    private static func copy(_ node: xmlNodePtr) -> XMLElement {
        var element = XMLElement(name: String(cString: node.pointee.name), line: Int(xmlGetLineNo(node)))
        if let ns = node.pointee.ns, let href = ns.pointee.href { element.namespace = String(cString: href) }
        var attr = node.pointee.properties
        while let a = attr {
            let name = String(cString: a.pointee.name)
            // An attribute's value is the text of its child nodes.
            var value = ""
            var part = a.pointee.children
            while let t = part {
                if let content = t.pointee.content { value += String(cString: content) }
                part = t.pointee.next
            }
            element.attributes[name] = value
            attr = a.pointee.next
        }
        var text = ""
        var child = node.pointee.children
        while let c = child {
            switch c.pointee.type {
            case XML_ELEMENT_NODE: element.children.append(copy(c))
            case XML_TEXT_NODE, XML_CDATA_SECTION_NODE:
                if let content = c.pointee.content { text += String(cString: content) }
            default: break
            }
            child = c.pointee.next
        }
        element.text = text.trimmingWhitespace()
        return element
    }
}

/// Well-formed XML (no schema) in, its root element out.
public enum XMLReader {
    public static func element(from bytes: [UInt8], fileName: String) throws(DomainError) -> XMLElement {
        guard let root = try XMLDocumentHandle.parse(bytes, fileName: fileName).root() else {
            throw .invalidXML(fileName, ["\(fileName): no root element"])
        }
        return root
    }
}

/// libxml2 set-up done once per process.
enum LibXML {
    private static let once: Void = { xmlInitParser() }()
    static func initialize() { _ = once }
}

/// libvirt's RelaxNG schema for domains, parsed once and shared: libxml2
/// allows one parsed schema to serve several validation contexts.
public final class DomainSchema: @unchecked Sendable {
    /// Where libvirt-daemon / libvirt-clients install it (virt-xml-validate
    /// reads the same file).
    public static let defaultPath = "/usr/share/libvirt/schemas/domain.rng"

    private let schema: xmlRelaxNGPtr
    private let lock = Mutex(())
    public let path: String

    private static let shared = Mutex<DomainSchema?>(nil)

    /// The schema at `defaultPath`, parsed on first use.
    public static func standard() throws(DomainError) -> DomainSchema {
        try shared.withLock { (cached: inout DomainSchema?) throws(DomainError) -> DomainSchema in
            if let cached { return cached }
            let s = try DomainSchema(path: defaultPath)
            cached = s
            return s
        }
    }

    public init(path: String) throws(DomainError) {
        LibXML.initialize()
        let collector = XMLErrorCollector(fileName: path)
        let parsed: xmlRelaxNGPtr? = withExtendedLifetime(collector) {
            guard let parser = xmlRelaxNGNewParserCtxt(path) else { return nil }
            defer { xmlRelaxNGFreeParserCtxt(parser) }
            xmlRelaxNGSetParserStructuredErrors(parser, XMLErrorCollector.callback, Unmanaged.passUnretained(collector).toOpaque())
            return xmlRelaxNGParse(parser)
        }
        guard let parsed else {
            throw .schemaUnavailable(path, collector.messages.first ?? "\(path): cannot be read as a RelaxNG schema")
        }
        schema = parsed
        self.path = path
    }

    deinit { xmlRelaxNGFree(schema) }

    /// The schema's complaints about `document`; empty when it is valid.
    func validate(_ document: XMLDocumentHandle, fileName: String) -> [String] {
        let collector = XMLErrorCollector(fileName: fileName)
        return lock.withLock { _ in
            withExtendedLifetime(collector) {
                guard let context = xmlRelaxNGNewValidCtxt(schema) else { return ["\(fileName): libxml2 could not allocate a RelaxNG validation context"] }
                defer { xmlRelaxNGFreeValidCtxt(context) }
                xmlRelaxNGSetValidStructuredErrors(context, XMLErrorCollector.callback, Unmanaged.passUnretained(collector).toOpaque())
                let rc = xmlRelaxNGValidateDoc(context, document.doc)
                if rc == 0 { return [] }
                return collector.messages.isEmpty ? ["\(fileName): does not match \(path) (libxml2 status \(rc))"] : collector.messages
            }
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        let ws: (Character) -> Bool = { $0 == " " || $0 == "\n" || $0 == "\t" || $0 == "\r" }
        guard let first = firstIndex(where: { !ws($0) }), let last = lastIndex(where: { !ws($0) }) else { return "" }
        return String(self[first...last])
    }
}
