import Testing
@testable import Gateway

@Test func placeholder() { #expect(Bool(true)) }
