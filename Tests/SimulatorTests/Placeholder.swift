import Testing
@testable import Simulator

@Test func placeholder() { #expect(Bool(true)) }
