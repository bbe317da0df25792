// The `tenants` workload: N processes, each with its own mktme key (its own KeyID), churning
// anonymous memory side by side, so the allocator hands pages freed under one KeyID to another.
//
// Each of N tenants (8; quick 4) is a process that adds an "mktme" type=cpu key. Then rounds
// (200; quick 20) visit the tenants in turn; a visit maps 64 pages (PROT_NONE, then
// encrypt_mprotect(PROT_READ|PROT_WRITE) with the tenant's key; under `none`, MKTME off, a plain
// mprotect), writes every page, and on every fourth visit forks: the child writes half of the
// range (COW breaks, the copies take the VMA's KeyID) and exits; then the range is unmapped.
//
// Extras: `tenants`, `rounds`, `keyids` (distinct KeyIDs the tenants got), `pages_touched`,
// `forks`, and per-visit modeled cycles.
//
// Invariant: modeled results depend only on config, costs and policy.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMKeys

/// N tenants with their own keys: mmap/touch/fork/munmap churn.
public struct TenantsWorkload: BenchWorkload {
    public init() {}
    public var name: String { "tenants" }
    public var summary: String { "N processes each with its own mktme key: mmap/encrypt_mprotect/touch/fork/munmap churn" }
    public var policyIndependent: Bool { false }

    static let pagesPerVisit = 64

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let bk = try BenchKernel(context)
        let k = bk.kernel
        let n = context.quick ? 4 : 8
        let rounds = context.quick ? 20 : 200
        var tenants: [(task: TaskStruct, serial: KeySerial?)] = []
        for i in 0..<n {
            let t = k.spawn()
            tenants.append((t, bk.addMKTMEKey(t.pid, "tenant-\(i)")))
        }
        let keyids = Set(tenants.compactMap { $0.serial.flatMap { bk.keyid($0) } })
        let len = UInt64(Self.pagesPerVisit * pageSize)
        let start = bk.mark()
        var touched = 0, forks = 0, visits = 0
        for r in 0..<rounds {
            for (i, tenant) in tenants.enumerated() {
                let pid = tenant.task.pid
                guard case .success(let a) = k.mmap(pid, addr: VirtAddr(0), length: len, prot: .none,
                                                    flags: [.private, .anonymous]) else { throw BenchWorkloadError("tenants: mmap failed") }
                if let s = tenant.serial {
                    guard case .success = k.encryptMprotect(pid, addr: a, length: len, prot: [.read, .write], serial: s) else {
                        throw BenchWorkloadError("tenants: encrypt_mprotect failed")
                    }
                } else {
                    _ = k.mprotect(pid, addr: a, length: len, prot: [.read, .write])
                }
                touched += k.memTouch(tenant.task, a, len, [.write])
                if (r + i) % 4 == 0, case .success(let child) = k.fork(pid), let ct = k.task(child) {
                    touched += k.memTouch(ct, a, len / 2, [.write])
                    k.exit(child)
                    forks += 1
                }
                _ = k.munmap(pid, addr: a, length: len)
                visits += 1
            }
        }
        let d = bk.delta(since: start)
        for t in tenants { k.exit(t.task.pid) }
        let extra: [String: JSONValue] = [
            "tenants": .int(Int64(n)), "rounds": .int(Int64(rounds)), "keyids": .int(Int64(keyids.count)),
            "pages_touched": .int(Int64(touched)), "forks": .int(Int64(forks)),
            "cycles_per_visit": .double(benchRound(Double(d.cycles) / Double(max(visits, 1)), 1)),
            "costs": .string(context.costs.name),
        ]
        let row = BenchRow(workload: name, policy: (context.policy ?? context.config.kernel.policy).rawValue,
                           modeledCycles: d.cycles, counters: d.counters, wallSeconds: BenchHost.wallSeconds() - wall0, extra: extra)
        return BenchResult(row: row)
    }
}
