import Testing
@testable import Control

@Test func placeholder() { #expect(Bool(true)) }
