public import ArgumentParser
import Foundation

/// The exit statuses of every mindie-ms binary (docs/decisions.md, "One exit-status convention"):
/// 0 success, `--help` or `--version`; 1 a failure at run time (a port is taken, a peer refused, start-up failed);
/// 2 a usage or configuration error (an unknown flag, a bad value, a config file that is missing or invalid).
/// ArgumentParser's own usage errors would exit 64 (EX_USAGE); scripts and kubelet see one rule instead.
public enum ExitStatus {
    public static let failure = ExitCode(1)
    public static let usage = ExitCode(2)

    /// The status an error that ended parsing or `run()` maps to.
    public static func code<C: ParsableCommand>(for error: any Error, of command: C.Type) -> Int32 {
        if let e = error as? ExitCode { return e.rawValue }
        let code = command.exitCode(for: error)
        if code == .validationFailure { return usage.rawValue }
        return code.rawValue
    }

    /// Prints what ArgumentParser would for `error` (help and version to stdout, the rest to stderr) and exits
    /// with the convention's status.
    public static func exit<C: ParsableCommand>(with error: any Error, of command: C.Type) -> Never {
        let status = code(for: error, of: command)
        let message = command.fullMessage(for: error)
        if status == 0 {
            if !message.isEmpty { print(message) }
        } else if !message.isEmpty, !(error is ExitCode) {
            FileHandle.standardError.write(Data((message + "\n").utf8))
        }
        Foundation.exit(status)
    }
}

extension ParsableCommand {
    /// `static func main()` of a synchronous command, with the convention's exit statuses.
    public static func runWithExitStatus() -> Never {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            ExitStatus.exit(with: error, of: self)
        }
        Foundation.exit(0)
    }
}

extension AsyncParsableCommand {
    /// `static func main()` of an async command (or one with async subcommands), with the convention's exit statuses.
    public static func runWithExitStatus() async -> Never {
        do {
            var command = try parseAsRoot()
            if var async = command as? any AsyncParsableCommand { try await async.run() } else { try command.run() }
        } catch {
            ExitStatus.exit(with: error, of: self)
        }
        Foundation.exit(0)
    }
}
