import ArgumentParser
import Foundation
import MSCore

@main
struct Msctl: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "msctl",
        abstract: "Command-line client of ms_deployer: create, update, get and delete inference services.",
        version: ProductInfo.versionLine(binary: "msctl"))
}
