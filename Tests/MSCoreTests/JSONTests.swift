import Foundation
import MSCore
import Testing

@Suite("JSON value")
struct JSONTests {
    @Test("parses and dumps compactly, keeping key order; integers stay integers")
    func roundTrip() throws {
        let v = try JSON.parse(#" { "b" : [1, 2.50, -3e2, true, null], "a": "x\u00e9\ud83d\ude00\/" } "#)
        #expect(v.compact == #"{"b":[1,2.5,-300.0,true,null],"a":"xé😀/"}"#)
        #expect(v["b"]?.arrayValue?[0] == .int(1))
        #expect(v["b"]?.arrayValue?[1] == .double(2.5))
        #expect(v["b"]?.arrayValue?[2].intValue == -300)
        #expect(v["b"]?.arrayValue?[3] == .bool(true))
        #expect(v.depth == 2)
        #expect(try JSON.parse(v.compact) == v)
    }

    @Test("rejects malformed input", arguments: [
        "", "{", "[1,]", "{\"a\"1}", "01", "1.", "\"\\x\"", "\"a\nb\"", "tru", "{} x", "\"\\ud800\"", "-",
    ])
    func malformed(input: String) {
        #expect(throws: JSONParseError.self) { try JSON.parse(input) }
    }

    @Test("nesting past the limit is .tooDeep, at the limit is accepted")
    func depth() throws {
        #expect(throws: JSONParseError.tooDeep(limit: 3)) { try JSON.parse("[[[[1]]]]", maxDepth: 3) }
        #expect(try JSON.parse("[[[1]]]", maxDepth: 3).depth == 3)
    }

    @Test("a duplicate key: the last value wins, at the position where the key first appeared")
    func duplicateKeys() throws {
        let v = try JSON.parse(#"{"a":1,"b":2,"a":3}"#)
        #expect(v["a"] == .int(3))
        #expect(v.objectValue?.keys == ["a", "b"])
        #expect(v.compact == #"{"a":3,"b":2}"#)
        // The same rule for objects built in code.
        #expect(JSON.obj(["k": 1, "j": 2, "k": 4]).compact == #"{"k":4,"j":2}"#)
    }

    @Test("object equality ignores member order; the sorted rendering is order-free too")
    func objectEquality() throws {
        let a = try JSON.parse(#"{"x":1,"y":[true]}"#)
        let b = try JSON.parse(#"{"y":[true],"x":1}"#)
        #expect(a == b && a.hashValue == b.hashValue)
        #expect(a.compact != b.compact)
        #expect(a.serialized() == b.serialized())
        #expect(a != (try JSON.parse(#"{"x":1}"#)))
        #expect(JSON.int(1) != .double(1))
    }

    @Test("integers are exact; integral non-integer literals convert, others do not")
    func numbers() throws {
        #expect(try JSON.parse("9223372036854775807") == .int(Int64.max))
        #expect(try JSON.parse("9223372036854775808").intValue == nil)
        #expect(try JSON.parse("1e3").intValue == 1000)
        #expect(try JSON.parse("1.5").intValue == nil)
        #expect(try JSON.parse("true").intValue == nil)
        #expect(try JSON.parse("-0") == .int(0))
        #expect(JSON.double(2).compact == "2.0")
        #expect(JSON.double(.nan).compact == "null")
    }

    @Test("setting and removing members keeps the others in place")
    func editing() {
        var o: JSON.Object = ["a": 1, "b": 2, "c": 3]
        o["b"] = nil
        o["a"] = "x"
        o["d"] = .null
        #expect(o.keys == ["a", "c", "d"] && o["c"] == .int(3))
        #expect(JSON.object(o).setting("c", true).compact == #"{"a":"x","c":true,"d":null}"#)
    }

    @Test("large objects (an index past 16 members) keep the same rules as small ones", arguments: [3, 16, 17, 40])
    func largeObjects(count: Int) throws {
        let text = "{" + (0..<count).map { "\"k\($0)\":\($0)" }.joined(separator: ",") + ",\"k1\":\"again\"}"
        var o = try #require(try JSON.parse(text).objectValue)
        #expect(o.count == count)
        #expect(o["k1"] == "again" && o.keys[1] == "k1")
        #expect(o["k\(count - 1)"] == .int(Int64(count - 1)) && o["k\(count)"] == nil)
        // removing shifts the later members: every lookup still finds its own value
        o["k0"] = nil
        o["new"] = true
        #expect(o.keys.first == "k1" && o.keys.last == "new" && o.count == count)
        for n in 2..<count { #expect(o["k\(n)"] == .int(Int64(n))) }
        #expect(o.removeValue(forKey: "new") == true && o["new"] == nil)
        var shuffled = JSON.Object(Array(o).reversed().map { ($0.key, $0.value) })
        #expect(shuffled == o && shuffled.hashValue == o.hashValue)
        shuffled["k1"] = 1
        #expect(shuffled != o)
    }

    @Test("escapes control characters as nlohmann does; pretty and sorted renderings")
    func rendering() {
        #expect(JSON.quoted("a\"\\\n\u{01}\u{08}") == #""a\"\\\n\u0001\b""#)
        let v = JSON.obj(["b": [1, 2], "a": .obj([:])])
        #expect(v.pretty(indent: 2) == "{\n  \"b\": [\n    1,\n    2\n  ],\n  \"a\": {}\n}")
        #expect(v.serialized() == #"{"a":{},"b":[1,2]}"#)
    }

    @Test("Codable round trip through Foundation's coders keeps every kind of value")
    func codable() throws {
        let v = try JSON.parse(#"{"a":[1,2.5,"s",null,false],"b":{"c":-7}}"#)
        let back = try JSONDecoder().decode(JSON.self, from: JSONEncoder().encode(v))
        #expect(back == v)
    }
}
