import Testing
@testable import MSCore

@Test func placeholder() { #expect(Bool(true)) }
