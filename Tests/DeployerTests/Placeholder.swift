import Testing
@testable import Control

@Test func deployerPlaceholder() { #expect(Bool(true)) }
