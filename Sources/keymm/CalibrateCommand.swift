// `keymm calibrate`: measures this host (cache-line flush, page zeroing/copying, memory latency,
// AES-XTS per 4 KiB, syscall entry, a real page fault) and writes a cost profile JSON usable with
// `--set costs=FILE`. Prints a readable table. Exit status 0 (2 when the file cannot be written).
import ArgumentParser
import Foundation
import KeyMM

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure this host's costs and write a cost profile (use it with --set costs=FILE)."
    )

    @Option(name: .long, help: "Cost profile to write.")
    var output: String = "keymm-costs.json"

    @Option(name: .long, help: "AES-XTS key size to price: 128 or 256.")
    var xtsBits: Int = 128

    @Flag(name: .long, help: "Shorter measurements (less precise).")
    var quick = false

    @Flag(name: .long, help: "Print only the file name.")
    var quiet = false

    func run() throws {
        guard xtsBits == 128 || xtsBits == 256 else {
            FileHandle.standardError.write(Data("keymm calibrate: error: --xts-bits must be 128 or 256\n".utf8))
            throw ExitCode(2)
        }
        let (profile, measurements) = HostCalibration.run(quick: quick, keyBits: xtsBits)
        if !quiet {
            print("host: \(BenchHost.cpuModel() ?? "unknown CPU"), TSC \(String(format: "%.3f", profile.tscHz / 1e9)) GHz (measured)\n")
            var cells = [["measurement", "ns", "cycles", "prices", "how"]]
            for m in measurements {
                let ns = m.nanoseconds < 0 ? "n/a" : String(format: "%.2f", m.nanoseconds)
                let cyc = m.nanoseconds < 0 ? "-" : String(format: "%.0f", m.nanoseconds * profile.tscHz / 1e9)
                cells.append([m.name, ns, cyc, m.event?.name ?? "-", m.method])
            }
            print(BenchFormatter.align(cells))
            var changed = [["event", "default cycles", "calibrated cycles"]]
            for e in CostEvent.allCases where profile[e] != CostProfile.default[e] {
                changed.append([e.name, String(CostProfile.default[e]), String(profile[e])])
            }
            print(BenchFormatter.align(changed))
        }
        do {
            try profile.jsonData().write(to: URL(fileURLWithPath: output))
        } catch {
            FileHandle.standardError.write(Data("keymm calibrate: error: cannot write \(output): \(error)\n".utf8))
            throw ExitCode(2)
        }
        print("cost profile written to \(output) (use: --set costs=\(output))")
    }
}
