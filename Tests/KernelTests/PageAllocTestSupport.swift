// Helpers for the page-allocator tests: small machines, a KeyID-reference table with a fake
// PCONFIG, and free-list snapshots read through @testable access.
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

/// PCONFIG that always succeeds (the tests only need reference counts).
final class PageAllocFakeProgrammer: KeyProgrammer {
    func programKeyID(_ keyid: KeyID, _ command: KeyProgramCommand) -> KeyProgramStatus { .success }
}

/// A small machine (default 64 MiB, 1 node, 1 MiB cache) for fast tests.
func pageAllocMachine(memory: ByteCount = .mib(64), nodes: Int = 1) throws -> Machine {
    var c = MachineConfig()
    c.memory = memory
    c.nodes = nodes
    c.cacheSize = .mib(1)
    return try Machine(config: c)
}

/// An allocator on a fresh small machine, with KeyID references for KeyIDs 1...63.
func makePageAllocator(policy: AllocatorPolicy = .integrated, memory: ByteCount = .mib(64), nodes: Int = 1,
                       poisoning: Bool = false) throws -> (PageAllocator, KeyIDReferences) {
    let m = try pageAllocMachine(memory: memory, nodes: nodes)
    let refs = KeyIDReferences(range: 1...63, programmer: PageAllocFakeProgrammer())
    return (PageAllocator(machine: m, policy: policy, keyidRefs: refs, poisoning: poisoning), refs)
}

extension PageAllocator {
    /// Every zone's free lists, head to tail, as PFNs (explicit lists only).
    func freeListsForTest() -> [[[UInt64]]] {
        buddy.zoneIndices.map { z in
            (0...Int(maxPageOrder)).map { o in
                var out: [UInt64] = []
                var p = buddy.areas[buddy.areaIndex(z, o)].head
                while p != BuddyAllocator.nilLink { out.append(p); p = store.peek(p).mapping }
                return out
            }
        }
    }

    /// Free-block counts per order, summed over zones.
    var buddyCounts: [Int] { (0...Int(maxPageOrder)).map { freeBlocks(order: PageOrder(UInt8($0))) } }
}

/// The tests' seeded generator.
typealias PageAllocRNG = SeededGenerator
