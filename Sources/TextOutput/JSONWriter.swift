import Foundation

/// A JSON value, written by `JSONObject`: the one JSON writer for every `--json` output and event
/// stream. Strings are always escaped: quotes, backslashes and every scalar `SafeText.isUnsafe`
/// calls unsafe become `\uXXXX`, so the text keeps every character exactly and still cannot drive
/// the terminal it is printed on.
public enum JSONValue: Equatable, Sendable {
    case string(String)
    case int(Int64)
    case uint(UInt64)
    /// Written with `digits` significant digits; NaN and infinities as null.
    case double(Double, digits: Int)
    case bool(Bool)
    case null
    case array([JSONValue])
    case object(JSONObject)

    public static func double(_ d: Double) -> JSONValue { .double(d, digits: 6) }
    public static func int(_ i: Int) -> JSONValue { .int(Int64(i)) }

    public var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .string(let s): JSONValue.writeString(s, to: &out)
        case .int(let i): out += String(i)
        case .uint(let u): out += String(u)
        case .double(let d, let digits): out += d.isFinite ? String(format: "%.\(max(1, min(17, digits)))g", d) : "null"
        case .bool(let b): out += b ? "true" : "false"
        case .null: out += "null"
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += "," }
                v.write(to: &out)
            }
            out += "]"
        case .object(let o): o.write(to: &out)
        }
    }

    /// `s` as a JSON string literal, quotes included.
    public static func quoted(_ s: String) -> String {
        var out = ""
        writeString(s, to: &out)
        return out
    }

    static func writeString(_ s: String, to out: inout String) {
        out += "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where SafeText.isUnsafe(u):
                for unit in String(u).utf16 {
                    let hex = String(unit, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                }
            default: out.unicodeScalars.append(u)
            }
        }
        out += "\""
    }
}

/// A JSON object with its keys in the order they were added (figures read best in a fixed order).
public struct JSONObject: Equatable, Sendable {
    private var members: [(String, JSONValue)] = []

    public init() {}

    public init(_ members: [(String, JSONValue)]) { self.members = members }

    public static func == (a: JSONObject, b: JSONObject) -> Bool {
        a.members.count == b.members.count && zip(a.members, b.members).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
    }

    public mutating func add(_ key: String, _ value: JSONValue) { members.append((key, value)) }
    public mutating func add(_ key: String, _ value: String) { add(key, .string(value)) }
    public mutating func add(_ key: String, _ value: String?) { add(key, value.map(JSONValue.string) ?? .null) }
    public mutating func add(_ key: String, _ value: Int) { add(key, .int(Int64(value))) }
    public mutating func add(_ key: String, _ value: Int?) { add(key, value.map { .int(Int64($0)) } ?? .null) }
    public mutating func add(_ key: String, _ value: UInt64) { add(key, .uint(value)) }
    public mutating func add(_ key: String, _ value: Bool) { add(key, .bool(value)) }
    public mutating func add(_ key: String, _ value: Double, digits: Int = 6) {
        add(key, .double(value, digits: digits))
    }
    public mutating func add(_ key: String, _ value: JSONObject) { add(key, .object(value)) }
    public mutating func add(_ key: String, _ values: [JSONObject]) { add(key, .array(values.map(JSONValue.object))) }
    public mutating func add(_ key: String, _ values: [String]) { add(key, .array(values.map(JSONValue.string))) }
    public mutating func addNull(_ key: String) { add(key, .null) }

    /// Appends `other`'s members after this object's.
    public mutating func merge(_ other: JSONObject) { members += other.members }

    public var isEmpty: Bool { members.isEmpty }

    /// The object on one line, as `--json` prints it.
    public var text: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        out += "{"
        for (i, (k, v)) in members.enumerated() {
            if i > 0 { out += "," }
            JSONValue.writeString(k, to: &out)
            out += ":"
            v.write(to: &out)
        }
        out += "}"
    }
}

extension JSONObject {
    /// The fields of a flat `Encodable` struct (strings, numbers, booleans, optionals, arrays of
    /// those), in the order its `encode(to:)` writes them: so a Codable report goes through this
    /// same writer instead of a second one.
    public init(encoding value: some Encodable) throws {
        let encoder = FlatEncoder()
        try value.encode(to: encoder)
        self = encoder.storage.object
    }
}

/// Where `FlatEncoder` collects members (a class: the containers share it).
private final class FlatStorage {
    var object = JSONObject()
}

public struct JSONEncodingError: Error, CustomStringConvertible {
    public var description: String
}

private struct FlatEncoder: Encoder {
    let storage = FlatStorage()
    var codingPath: [CodingKey] = []
    var userInfo: [CodingUserInfoKey: Any] = [:]

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(FlatKeyed<Key>(storage: storage))
    }
    func unkeyedContainer() -> UnkeyedEncodingContainer { FailingUnkeyed() }
    func singleValueContainer() -> SingleValueEncodingContainer { FailingSingle() }
}

/// Turns one scalar (or array of scalars) into a JSONValue, or fails.
private func scalar(_ v: Any) -> JSONValue? {
    switch v {
    case let s as String: return .string(s)
    case let b as Bool: return .bool(b)
    case let d as Double: return .double(d)
    case let f as Float: return .double(Double(f))
    case let i as Int: return .int(Int64(i))
    case let i as Int64: return .int(i)
    case let i as Int32: return .int(Int64(i))
    case let u as UInt64: return .uint(u)
    case let u as UInt32: return .uint(UInt64(u))
    case let u as UInt16: return .uint(UInt64(u))
    case let u as UInt8: return .uint(UInt64(u))
    case let u as UInt: return .uint(UInt64(u))
    case let a as [Any]:
        var out: [JSONValue] = []
        for e in a {
            guard let j = scalar(e) else { return nil }
            out.append(j)
        }
        return .array(out)
    default: return nil
    }
}

private struct FlatKeyed<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let storage: FlatStorage
    var codingPath: [CodingKey] = []

    mutating func encodeNil(forKey key: Key) throws { storage.object.addNull(key.stringValue) }
    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        guard let j = scalar(value) else {
            throw JSONEncodingError(
                description:
                    "JSONObject(encoding:): '\(key.stringValue)' is not a string, number, boolean or array of them"
            )
        }
        storage.object.add(key.stringValue, j)
    }
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
        if let value { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
    }
    mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type, forKey key: Key) -> KeyedEncodingContainer<N> {
        KeyedEncodingContainer(FlatKeyed<N>(storage: FlatStorage()))
    }
    mutating func nestedUnkeyedContainer(forKey key: Key) -> UnkeyedEncodingContainer { FailingUnkeyed() }
    mutating func superEncoder() -> Encoder { FlatEncoder() }
    mutating func superEncoder(forKey key: Key) -> Encoder { FlatEncoder() }
}

private struct FailingUnkeyed: UnkeyedEncodingContainer {
    var codingPath: [CodingKey] = []
    var count = 0
    private func fail() throws -> Never {
        throw JSONEncodingError(description: "JSONObject(encoding:) takes flat structs only")
    }
    mutating func encodeNil() throws { try fail() }
    mutating func encode<T: Encodable>(_ value: T) throws { try fail() }
    mutating func nestedContainer<N: CodingKey>(keyedBy keyType: N.Type) -> KeyedEncodingContainer<N> {
        KeyedEncodingContainer(FlatKeyed<N>(storage: FlatStorage()))
    }
    mutating func nestedUnkeyedContainer() -> UnkeyedEncodingContainer { self }
    mutating func superEncoder() -> Encoder { FlatEncoder() }
}

private struct FailingSingle: SingleValueEncodingContainer {
    var codingPath: [CodingKey] = []
    private func fail() throws -> Never {
        throw JSONEncodingError(description: "JSONObject(encoding:) takes flat structs only")
    }
    mutating func encodeNil() throws { try fail() }
    mutating func encode<T: Encodable>(_ value: T) throws { try fail() }
}
