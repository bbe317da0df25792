// The keymm command line: subcommands demo, run, replay, bench, sweep, calibrate, fuzz, merge, report.
// Exit statuses follow the contract: 0 success, 1 divergence/violation, 2 bad input.
import ArgumentParser
import Foundation
import KeyMM

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
        subcommands: [Demo.self, Run.self, Replay.self, Bench.self, Sweep.self, Calibrate.self, Fuzz.self, Merge.self, Report.self]
    )
}
