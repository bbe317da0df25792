// The `keyid-pressure` workload: more keys than KeyIDs (docs/sources.md, seed 000: a KeyID is free only when its
// key is destroyed AND the last VMA and page using it are gone). keyid-bits=3 gives 7 KeyIDs; 20
// tenants take turns. A tenant without a key first adds an mktme key (ENOKEY when every KeyID is
// in use or dead: counted as a refusal, the turn is lost, the tenant retries at its next turn).
// A tenant with a key maps 16 pages, encrypt_mprotects them with the key, writes them, pins 4 of
// them with gup_pin (a driver's long-term pin), and unmaps the range; at every second use it
// invalidates its key (the KeyID goes dead while pinned pages still hold references). Pins are
// released 8 turns after they were taken; only then can a dead KeyID be reprogrammed for another
// key. Under `none` (MKTME off) no key exists and every turn maps the same pages on KeyID 0.
//
// Extras: `turns`, `tenants`, `keyids`, `keys_created`, `enokey_refusals`, `max_dead_keyids`,
// `occupancy` (a time series: one [turn, in_use, dead, free] sample per turn, for the report's
// KeyID-occupancy chart).
//
// Invariant: modeled results depend only on config, costs and policy.
import Foundation
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMKeys

/// Keys outnumber KeyIDs; pinned pages keep dead KeyIDs busy.
public struct KeyIDPressureWorkload: BenchWorkload {
    public init() {}
    public var name: String { "keyid-pressure" }
    public var summary: String { "20 tenants, 7 KeyIDs (keyid-bits=3): key create/destroy cycles, pinned pages holding dead KeyIDs" }
    public var policyIndependent: Bool { false }

    static let tenants = 20
    static let pagesPerTurn = 16
    static let pinnedPages = 4
    static let pinTurns = 8

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let bk = try BenchKernel(context) { c in c.machine.keyidBits = 3 }
        let k = bk.kernel
        let turns = context.quick ? 60 : 600
        var procs: [TaskStruct] = []
        for _ in 0..<Self.tenants { procs.append(k.spawn()) }
        let len = UInt64(Self.pagesPerTurn * pageSize)
        var pins: [(turn: Int, handle: Int32)] = []
        var created = 0, refused = 0, maxDead = 0
        var occupancy: [JSONValue] = []
        var tenantKey = [KeySerial?](repeating: nil, count: Self.tenants)
        var uses = [Int](repeating: 0, count: Self.tenants)
        let start = bk.mark()
        let mktmeOn = k.keys.mktmeAvailable
        for turn in 0..<turns {
            while let p = pins.first, turn - p.turn >= Self.pinTurns {
                _ = k.gupUnpin(p.handle)
                pins.removeFirst()
            }
            let t = turn % Self.tenants
            let task = procs[t]
            let pid = task.pid
            if mktmeOn && tenantKey[t] == nil {
                tenantKey[t] = bk.addMKTMEKey(pid, "pressure-\(turn)")
                if tenantKey[t] == nil { refused += 1 } else { created += 1 }
            }
            let serial = tenantKey[t]
            if serial != nil || !mktmeOn {
                guard case .success(let a) = k.mmap(pid, addr: VirtAddr(0), length: len, prot: .none,
                                                    flags: [.private, .anonymous]) else { throw BenchWorkloadError("keyid-pressure: mmap failed") }
                if let s = serial {
                    _ = k.encryptMprotect(pid, addr: a, length: len, prot: [.read, .write], serial: s)
                } else {
                    _ = k.mprotect(pid, addr: a, length: len, prot: [.read, .write])
                }
                _ = k.memTouch(task, a, len, [.write])
                if case .success(let h) = k.gupPin(task, a, Self.pinnedPages) { pins.append((turn, h)) }
                _ = k.munmap(pid, addr: a, length: len)
                uses[t] += 1
                if let s = serial, uses[t] % 2 == 0 {
                    _ = k.keyctl(pid, KeyctlOperation.invalidate.rawValue, s)
                    tenantKey[t] = nil
                }
            }
            let occ = bk.keyidOccupancy()
            maxDead = max(maxDead, occ["dead"] ?? 0)
            occupancy.append(.array([.int(Int64(turn)), .int(Int64(occ["in-use"] ?? 0)), .int(Int64(occ["dead"] ?? 0)),
                                     .int(Int64(occ["free"] ?? 0))]))
        }
        for p in pins { _ = k.gupUnpin(p.handle) }
        let d = bk.delta(since: start)
        for t in procs { k.exit(t.pid) }
        let extra: [String: JSONValue] = [
            "turns": .int(Int64(turns)), "tenants": .int(Int64(Self.tenants)),
            "keyids": .int(Int64(k.keys.references.slots.count)),
            "keys_created": .int(Int64(created)), "enokey_refusals": .int(Int64(refused)),
            "max_dead_keyids": .int(Int64(maxDead)),
            "occupancy_columns": .array([.string("turn"), .string("in_use"), .string("dead"), .string("free")]),
            "occupancy": .array(occupancy),
            "costs": .string(context.costs.name),
        ]
        let row = BenchRow(workload: name, policy: (context.policy ?? context.config.kernel.policy).rawValue,
                           modeledCycles: d.cycles, counters: d.counters, wallSeconds: BenchHost.wallSeconds() - wall0, extra: extra)
        return BenchResult(row: row)
    }
}
