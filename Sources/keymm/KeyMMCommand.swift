// The keymm command line: subcommands demo, run, replay, bench, fuzz, calibrate, report.
// Exit statuses follow the contract: 0 success, 1 divergence/violation, 2 bad input.
import ArgumentParser
import KeyMM

@main
struct KeyMMCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keymm",
        abstract: "An executable model of the Linux mm with multi-key memory encryption (MKTME).",
        subcommands: [Demo.self, Run.self, Replay.self, Bench.self, Calibrate.self, Fuzz.self]
    )
}
