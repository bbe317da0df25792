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
                var p = buddy.area(z, o).pointee.head
                while p != BuddyAllocator.nilLink { out.append(p); p = store.peek(p).mapping }
                return out
            }
        }
    }

    /// Free-block counts per order, summed over zones.
    var buddyCounts: [Int] { (0...Int(maxPageOrder)).map { freeBlocks(order: PageOrder(UInt8($0))) } }
}

/// splitmix64: the tests' seeded generator.
struct PageAllocRNG: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
