import MSCore
import Testing

/// The reader every binary's config parser uses: what each getter accepts, and the exact message of what it
/// refuses (DECISIONS 3: file, key, value, allowed).
@Suite("ConfigReader")
struct ConfigReaderTests {
    let r: ConfigReader

    init() throws {
        let text = #"""
        {"s": {"b": true, "n": 7, "str": "x", "obj": {"k": 1}},
         "b": false, "notBool": 1,
         "name": "abc", "empty": "", "num": 3, "float": 2.5, "integral": 128.0, "huge": 1e300, "nullv": null,
         "port": "8080", "lowPort": "80", "signedPort": "+8080", "intPort": 8080,
         "sInt": " 42 ", "sBad": "4x", "sDouble": "0.25", "sNaN": "nan", "numStr": "\t1.5 ",
         "mode": "b", "list": [1, {"a": 2}]}
        """#
        r = try ConfigReader(document: Array(text.utf8), file: "f.json")
    }

    // Closures do not infer a typed throw, so these take any error and insist it is a ConfigError.
    private func message(_ body: () throws -> Void) -> String? {
        do { try body(); return nil } catch { return (error as? ConfigError)?.description ?? "not a ConfigError: \(error)" }
    }

    private func code(_ body: () throws -> Void) -> ConfigError.Code? {
        do { try body(); return nil } catch { return (error as? ConfigError)?.code }
    }

    @Test("one description format: FILE: KEY = VALUE: allowed ALLOWED")
    func description() {
        let e = ConfigError(code: .outOfRange, file: "a.json", key: "x.y", value: "0", allowed: "integer 1...2")
        #expect(e.description == "a.json: x.y = 0: allowed integer 1...2")
        #expect(ConfigError(file: "environment", key: "K", value: "v", allowed: "1 or 0").code == .invalidValue)
    }

    @Test("a document must be JSON and an object")
    func document() {
        func load(_ text: String) -> ConfigError? {
            do { _ = try ConfigReader(document: Array(text.utf8), file: "d.json"); return nil } catch { return error }
        }
        #expect(load("{") == ConfigError(code: .invalidJSON, file: "d.json", key: "<document>",
                                         value: "syntax error at byte 1", allowed: "a JSON object"))
        #expect(load("[1, 2]")?.description == "d.json: <document> = [1,2]: allowed a JSON object")
        #expect(load("\"" + String(repeating: "x", count: 60) + "\"")?.value == "\"" + String(repeating: "x", count: 39))
        #expect(load("{}") == nil)
        #expect(throws: ConfigError(code: .invalidJSON, file: "d.json", key: "<document>", value: "nesting deeper than 2",
                                    allowed: "a JSON object")) {
            try ConfigReader(document: Array(#"{"a":{"b":{}}}"#.utf8), file: "d.json", maxDepth: 2)
        }
    }

    @Test("section and optionalSection: nested paths in every message")
    func sections() throws {
        let s = try r.section("s")
        #expect(s.path == "s" && s.key("b") == "s.b")
        #expect(try s.section("obj").int("k", 0...1) == 1)
        #expect(message { _ = try s.section("obj").int("k", 2...3) } == "f.json: s.obj.k = 1: allowed integer 2...3")
        #expect(message { _ = try r.section("b") } == "f.json: b = false: allowed an object")
        #expect(code { _ = try r.section("b") } == .wrongType)
        #expect(message { _ = try r.section("none") } == "f.json: none = <missing>: allowed an object")
        #expect(code { _ = try r.section("none") } == .missingKey)
        #expect(try r.optionalSection("none") == nil)
        #expect(try r.optionalSection("s")?.bool("b") == true)
        #expect(message { _ = try r.optionalSection("name") } == "f.json: name = \"abc\": allowed an object")
        #expect(r.has("nullv") && !r.has("none"))
    }

    @Test("bool")
    func bool() throws {
        #expect(try r.bool("b") == false)
        #expect(try r.bool("none", default: true) == true)
        #expect(message { _ = try r.bool("notBool") } == "f.json: notBool = 1: allowed true or false")
        #expect(message { _ = try r.bool("none") } == "f.json: none = <missing>: allowed true or false")
        #expect(message { _ = try r.bool("nullv", default: true) } == "f.json: nullv = null: allowed true or false")
    }

    @Test("string, string with a length, choice")
    func strings() throws {
        #expect(try r.string("empty") == "")
        #expect(message { _ = try r.string("num") } == "f.json: num = 3: allowed a string")
        #expect(try r.string("name", length: 1...3) == "abc")
        #expect(message { _ = try r.string("empty", length: 1...4096) } == "f.json: empty = \"\": allowed a string of 1...4096 characters")
        #expect(code { _ = try r.string("empty", length: 1...4096) } == .outOfRange)
        #expect(code { _ = try r.string("num", length: 1...4096) } == .wrongType)
        #expect(try r.choice("mode", ["a", "b"]) == "b")
        #expect(try r.choice("none", ["a", "b"], default: "a") == "a")
        #expect(message { _ = try r.choice("name", ["a", "b"]) } == #"f.json: name = "abc": allowed one of "a", "b""#)
        #expect(code { _ = try r.choice("name", ["a", "b"]) } == .invalidValue)
        #expect(code { _ = try r.choice("num", ["a"], default: "a") } == .wrongType)
        #expect(message { _ = try r.choice("none", ["a"]) } == #"f.json: none = <missing>: allowed one of "a""#)
    }

    @Test("int: written as an integer, within the range")
    func int() throws {
        #expect(try r.int("num", 3...3) == 3)
        #expect(try r.int("none", 0...9, default: 5) == 5)
        #expect(message { _ = try r.int("num", 4...9) } == "f.json: num = 3: allowed integer 4...9")
        #expect(code { _ = try r.int("num", 4...9) } == .outOfRange)
        #expect(message { _ = try r.int("integral", 0...200) } == "f.json: integral = 128.0: allowed integer 0...200")
        #expect(code { _ = try r.int("integral", 0...200) } == .wrongType)
        #expect(message { _ = try r.int("name", 0...1, default: 0) } == "f.json: name = \"abc\": allowed integer 0...1")
    }

    @Test("integral: any number with an integral value; nil when absent")
    func integral() throws {
        #expect(try r.integral("integral", 1...128) == 128)
        #expect(try r.integral("num", 1...128) == 3)
        #expect(try r.integral("none", 1...128) == nil)
        #expect(message { _ = try r.integral("float", 1...128) } == "f.json: float = 2.5: allowed integer 1...128")
        #expect(message { _ = try r.integral("integral", 1...127) } == "f.json: integral = 128.0: allowed integer 1...127")
        #expect(code { _ = try r.integral("name", 1...127) } == .wrongType)
    }

    @Test("double and numberOrNumericString")
    func doubles() throws {
        #expect(try r.double("float", 1.0...3.0) == 2.5)
        #expect(try r.double("num", 1.0...3.0) == 3)
        #expect(message { _ = try r.double("float", 3.0...4.0) } == "f.json: float = 2.5: allowed number 3.0...4.0")
        #expect(message { _ = try r.double("name", 3.0...4.0) } == "f.json: name = \"abc\": allowed number 3.0...4.0")
        #expect(try r.numberOrNumericString("numStr", 1.0...2.0) == 1.5)
        #expect(try r.numberOrNumericString("num", 1.0...3.0) == 3)
        #expect(message { _ = try r.numberOrNumericString("sNaN", 0.0...1.0) }
            == "f.json: sNaN = \"nan\": allowed a number or numeric string 0.0...1.0")
        #expect(message { _ = try r.numberOrNumericString("huge", 0.0...1.0) }
            == "f.json: huge = 1e+300: allowed a number or numeric string 0.0...1.0")
        #expect(code { _ = try r.numberOrNumericString("huge", 0.0...1.0) } == .outOfRange)
        #expect(code { _ = try r.numberOrNumericString("list", 0.0...1.0) } == .wrongType)
    }

    @Test("stringPort: a string of digits, 1024...65535")
    func stringPort() throws {
        #expect(try r.stringPort("port") == 8080)
        for k in ["lowPort", "signedPort", "intPort", "empty"] {
            let v = k == "intPort" ? "8080" : k == "lowPort" ? "\"80\"" : k == "signedPort" ? "\"+8080\"" : "\"\""
            #expect(message { _ = try r.stringPort(k) } == "f.json: \(k) = \(v): allowed a string holding a port 1024...65535")
        }
    }

    @Test("stringInt and stringDouble: numbers in strings, spaces trimmed, default when absent")
    func stringNumbers() throws {
        #expect(try r.stringInt("sInt", 1...100, default: 1) == 42)
        #expect(try r.stringInt("none", 1...100, default: 9) == 9)
        #expect(message { _ = try r.stringInt("sBad", 1...100, default: 1) }
            == #"f.json: sBad = "4x": allowed a string holding an integer "1"..."100""#)
        #expect(message { _ = try r.stringInt("sInt", 1...10, default: 1) }
            == #"f.json: sInt = " 42 ": allowed a string holding an integer "1"..."10""#)
        #expect(code { _ = try r.stringInt("num", 1...10, default: 1) } == .wrongType)
        #expect(try r.stringDouble("sDouble", 0.0...1.0, default: 0.5) == 0.25)
        #expect(try r.stringDouble("none", 0.0...1.0, default: 0.5) == 0.5)
        #expect(message { _ = try r.stringDouble("sNaN", 0.0...1.0, default: 0) }
            == #"f.json: sNaN = "nan": allowed a string holding a number "0.0"..."1.0""#)
        // Tabs are not trimmed: the reference's scheduler strings trim spaces only.
        #expect(code { _ = try r.stringDouble("numStr", 0.0...2.0, default: 0) } == .outOfRange)
    }

    @Test("fail: a nil value is always missingKey; compact JSON otherwise")
    func fail() throws {
        let s = try r.section("s")
        #expect(s.fail("obj", s.object["obj"], "nothing", .wrongType)
            == ConfigError(code: .wrongType, file: "f.json", key: "s.obj", value: #"{"k":1}"#, allowed: "nothing"))
        #expect(s.fail("x", nil, "something", .outOfRange).code == .missingKey)
        #expect(r.fail("list", r.object["list"], "a").description == #"f.json: list = [1,{"a":2}]: allowed a"#)
    }
}

@Suite("IPAddress")
struct IPAddressTests {
    @Test("valid", arguments: ["10.0.0.1", "0.0.0.0", "255.255.255.255", "::", "::1", "fe80::1", "2001:db8::8:800:200c:417a",
                                "::ffff:10.1.2.3", "1:2:3:4:5:6:7:8"])
    func valid(ip: String) { #expect(IPAddress.isValid(ip)) }

    @Test("invalid", arguments: ["", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.04", "+1.2.3.4", " 1.2.3.4",
                                  ".7212.123.163", "123456", "1:2:3:4:5:6:7:8:9", "1::2::3", "fe80::1%eth0", "[::1]", "g::1"])
    func invalid(ip: String) { #expect(!IPAddress.isValid(ip)) }

    @Test("all-zero addresses")
    func allZero() {
        #expect(IPAddress.isAllZero("0.0.0.0") && IPAddress.isAllZero("::") && IPAddress.isAllZero("0:0::0"))
        #expect(!IPAddress.isAllZero("0.0.0.1") && !IPAddress.isAllZero("::1") && !IPAddress.isAllZero("x"))
    }
}
