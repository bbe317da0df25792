// `keymm demo`: the main job. Runs the built-in two-tenant scenario and the policy
// comparison on a fresh model and prints them as readable tables (under a minute).
import ArgumentParser
import Foundation
import KeyMM

struct Demo: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Tell the two-tenant MKTME story on the built-in scenario, then compare the allocator flush policies.")

    func run() throws {
        let start = Date()
        let findings: KeyMM.Demo.Findings
        do {
            findings = try KeyMM.Demo(out: { print($0) }).run()
        } catch {
            printError("keymm demo: the model failed a step: \(error)")
            throw ExitCode(1)
        }
        print("")
        print(String(format: "demo finished in %.1f s wall clock (modeled time is in cycles above)", Date().timeIntervalSince(start)))
        if findings.secretInDRAM || findings.secretVisibleThroughWrongKeyID || !findings.secretVisibleToOwner {
            printError("keymm demo: the model broke confidentiality; see the table above")
            throw ExitCode(1)
        }
    }
}
