// Shared helpers for the bench workloads that drive the whole kernel model (faults, vmas, macro,
// tenants, keyid-pressure): a fresh kernel from a BenchContext, mktme keys added the way a process
// would (add_key(2) into its user keyring), and cost-clock deltas for measured phases.
//
// Invariant: nothing here reads the host clock for a modeled value; host timings go only into
// wall/CPU seconds and host rates.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMKeys

/// A kernel for one bench run, with the helpers workloads share.
struct BenchKernel {
    let kernel: Kernel
    var machine: Machine { kernel.machine }

    /// A fresh machine + kernel for `context` (its policy already in `context.config.kernel`).
    init(_ context: BenchContext, adjust: (inout ModelConfig) -> Void = { _ in }) throws {
        var config = context.config
        if let p = context.policy { config.kernel.policy = p }
        adjust(&config)
        let machine = try Machine(config: config.machine, costs: context.costs)
        kernel = try Kernel(machine: machine, config: config.kernel)
    }

    /// add_key("mktme", name, "type=cpu algorithm=aes-xts-128") by `pid` into its user keyring;
    /// nil when MKTME is off (policy `none`) or no KeyID is free.
    func addMKTMEKey(_ pid: ProcessID, _ name: String) -> KeySerial? {
        switch kernel.addKey(pid, type: "mktme", description: name, payload: "type=cpu algorithm=aes-xts-128",
                             keyring: .userKeyring) {
        case .success(let s): return s
        case .failure: return nil
        }
    }

    /// The KeyID a key holds (nil: no such key or no KeyID).
    func keyid(_ serial: KeySerial) -> KeyID? { kernel.keys.key(serial)?.keyid }

    /// KeyID slots by state name (free, in-use, dead, reserved).
    func keyidOccupancy() -> [String: Int] {
        var out: [String: Int] = [:]
        for s in kernel.keys.references.slots { out[s.state, default: 0] += 1 }
        return out
    }

    /// Cycles and counters since `start`.
    func delta(since start: ClockMark) -> (cycles: UInt64, counters: [String: UInt64]) {
        var d: [String: UInt64] = [:]
        for (k, v) in machine.clock.snapshot { d[k] = v &- (start.counters[k] ?? 0) }
        return (machine.clock.cycles &- start.cycles, d)
    }

    /// The current clock position.
    func mark() -> ClockMark { ClockMark(cycles: machine.clock.cycles, counters: machine.clock.snapshot) }
}

/// A position of the cost clock.
struct ClockMark {
    var cycles: UInt64
    var counters: [String: UInt64]
}

/// Rounds to `digits` decimals for JSON extras.
func benchRound(_ x: Double, _ digits: Int = 3) -> Double {
    guard x.isFinite else { return 0 }
    let f = pow(10.0, Double(digits))
    return (x * f).rounded() / f
}

/// A workload that could not run.
struct BenchWorkloadError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
