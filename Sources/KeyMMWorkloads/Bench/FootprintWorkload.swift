// The `footprint` workload: host memory per simulated 4 KiB frame. Builds a machine with 64 GiB
// of DRAM (whatever `memory=` says: the figure is defined at 64 GiB), writes 1 GiB of it (every
// 64th frame, zeroed through KeyID 0 and written back, so host pages are touched sparsely), and
// measures the process's resident set and host page tables before and after.
//
// Reported (row `extra`): bytes per simulated frame in total (everything the machine added to the
// host: touched DRAM, cache arrays, host page tables) and excluding the touched data itself.
// Modeled cycles are those of the zeroing and write-backs (deterministic).
import Foundation
import KeyMMBase
import KeyMMHardware

/// Host bytes per simulated frame at 64 GiB with 1 GiB touched.
public struct FootprintWorkload: BenchWorkload {
    public init() {}
    public var name: String { "footprint" }
    public var summary: String { "host memory per simulated 4 KiB frame (64 GiB DRAM, 1 GiB touched)" }
    public var policyIndependent: Bool { true }

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        var config = context.config.machine
        config.memory = .gib(64)
        let touchedBytes: UInt64 = context.quick ? 64 << 20 : 1 << 30
        let rss0 = HostMemory.processResidentBytes() ?? 0
        let pte0 = HostMemory.pageTableBytes() ?? 0
        let machine = try Machine(config: config, costs: context.costs)
        let frames = machine.frameCount
        let touchedFrames = Int(touchedBytes >> pageShift)
        let stride = max(1, frames / touchedFrames)
        let t0 = BenchHost.threadCPUSeconds()
        for i in 0..<touchedFrames {
            machine.clearPage(PFN(UInt64(i * stride)), keyid: .tme)
        }
        machine.wbinvd()
        let cpu = BenchHost.threadCPUSeconds() - t0
        let rss1 = HostMemory.processResidentBytes() ?? 0
        let pte1 = HostMemory.pageTableBytes() ?? 0
        let dram = machine.dram.residentBytes() ?? 0
        let added = max(0, (rss1 - rss0) + (pte1 - pte0))
        let perFrame = Double(added) / Double(frames)
        let overheadPerFrame = Double(max(0, added - touchedFrames * pageSize)) / Double(frames)
        let extra: [String: JSONValue] = [
            "simulated_memory": .string(config.memory.description),
            "simulated_frames": .int(Int64(frames)),
            "touched_frames": .int(Int64(touchedFrames)),
            "touched_every_nth_frame": .int(Int64(stride)),
            "dram_resident_bytes": .int(Int64(dram)),
            "process_rss_added_bytes": .int(Int64(rss1 - rss0)),
            "host_page_table_added_bytes": .int(Int64(pte1 - pte0)),
            "host_bytes_per_frame": .double((perFrame * 100).rounded() / 100),
            "host_overhead_bytes_per_frame": .double((overheadPerFrame * 100).rounded() / 100),
            "clear_pages_per_s": .double((Double(touchedFrames) / cpu).rounded()),
        ]
        let row = BenchRow(workload: name, policy: "all", modeledCycles: machine.clock.cycles, counters: machine.clock.snapshot,
                           wallSeconds: BenchHost.wallSeconds() - wall0,
                           hostRate: HostRate(value: (perFrame * 100).rounded() / 100, unit: "bytes/frame"), extra: extra)
        return BenchResult(row: row, host: ["host_bytes_per_frame_64g_1g_touched": .double((perFrame * 100).rounded() / 100)])
    }
}
