// The keymm command line: subcommands demo, run, replay, bench, sweep, calibrate, fuzz, merge, report.
// Exit statuses follow the contract: 0 success, 1 divergence/violation, 2 bad input.
import ArgumentParser
import Foundation
import KeyMM

/// `keymm --version`: the release and the schemas of the machine-readable outputs.
let keymmVersion = "keymm 0.1.0 (run JSON schema 1, bench JSON schema 1)"

@main
struct KeyMMCommand: ParsableCommand {
    /// Like ParsableCommand.main, but a usage error (unknown option, bad argument) exits 2 as
    /// the contract says, not argument-parser's 64 (EX_USAGE).
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                let message = fullMessage(for: error)
                if !message.isEmpty { printError(message) }
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }

    static let configuration = CommandConfiguration(
        commandName: "keymm",
        abstract: "An executable model of the Linux mm with multi-key memory encryption (MKTME).",
        discussion: "Start with `keymm demo`; README.md has a five-minute tour of every command.",
        version: keymmVersion,
        subcommands: [Demo.self, Run.self, Replay.self, Bench.self, Sweep.self, Calibrate.self, Fuzz.self, Merge.self, Report.self]
    )
}
