// TLB: the translations one mm's CPUs cache, and the flushes that keep them honest.
//
// Model: one TLB per mm (the union of what every CPU in mm_cpumask may hold), a
// direct-mapped array of `entries` 4 KiB translations (virtual page number → leaf entry
// with the 4 KiB frame). Memory accesses (mem_read/mem_write/mem_touch) consult it first,
// so a missing flush after a PTE is downgraded or removed shows up as a stale access.
// Every flush of a range or of the whole mm counts one local flush, and one shootdown
// (IPI round) when more than one CPU is in the mm's cpumask (`cpus`, default 1; set it for
// multi-threaded processes).
//
// Invariants: a valid entry caches exactly what the page table held when it was filled;
// after `flush(range)` no entry for a page in the range is valid.
import KeyMMBase

/// The TLB of one mm.
package final class TLB {
    /// Translations cached (a power of two).
    package static let entries = 64
    // Flat storage (no array exclusivity checks on the access path).
    let tags: OwnedBuffer<UInt64>     // vpn + 1; 0 = invalid
    let values: OwnedBuffer<UInt64>   // leaf entry for the 4 KiB page
    /// CPUs that may hold this mm's translations (weight of mm_cpumask).
    package var cpus: Int = 1
    /// Counters [flushes, shootdowns, hits, misses] in a buffer: every access counts one without
    /// a dynamic exclusivity check.
    let counters: OwnedBuffer<UInt64>
    /// Local flushes (flush_tlb_range/flush_tlb_mm on the current CPU).
    package var flushes: UInt64 { counters[0] }
    /// Shootdowns (flushes that had to IPI other CPUs).
    package var shootdowns: UInt64 { counters[1] }
    /// Lookups that hit / missed.
    package var hits: UInt64 { counters[2] }
    package var misses: UInt64 { counters[3] }

    package init() {
        tags = OwnedBuffer(repeating: 0, count: TLB.entries)
        values = OwnedBuffer(repeating: 0, count: TLB.entries)
        counters = OwnedBuffer(zeroedCount: 4)
    }

    /// The cached leaf entry for a virtual page, if any.
    package func lookup(vpn: UInt64) -> UInt64? {
        let i = Int(truncatingIfNeeded: vpn) & (TLB.entries - 1)
        if tags[i] == vpn &+ 1 { counters[2] &+= 1; return values[i] }
        counters[3] &+= 1
        return nil
    }

    /// Caches a translation after a walk.
    package func fill(vpn: UInt64, entry: UInt64) {
        let i = Int(truncatingIfNeeded: vpn) & (TLB.entries - 1)
        tags[i] = vpn &+ 1
        values[i] = entry
    }

    /// Updates a cached entry in place if present (the CPU setting A/D on its own entry).
    package func update(vpn: UInt64, entry: UInt64) {
        let i = Int(truncatingIfNeeded: vpn) & (TLB.entries - 1)
        if tags[i] == vpn &+ 1 { values[i] = entry }
    }

    /// flush_tlb_range: invalidates [start, end) and counts one flush (+ one shootdown
    /// when other CPUs may cache the mm). Returns whether a shootdown was needed.
    @discardableResult
    package func flush(_ start: VirtAddr, _ end: VirtAddr) -> Bool {
        let s = start.pageNumber, e = (end.rawValue &+ UInt64(pageSize - 1)) >> pageShift
        if e &- s >= UInt64(TLB.entries) {
            invalidateAll()
        } else {
            var v = s
            while v < e {
                let i = Int(truncatingIfNeeded: v) & (TLB.entries - 1)
                if tags[i] == v &+ 1 { tags[i] = 0 }
                v &+= 1
            }
        }
        return count()
    }

    /// flush_tlb_mm: invalidates everything and counts one flush.
    @discardableResult
    package func flushAll() -> Bool {
        invalidateAll()
        return count()
    }

    private func count() -> Bool {
        counters[0] &+= 1
        if cpus > 1 { counters[1] &+= 1; return true }
        return false
    }

    private func invalidateAll() {
        tags.fill(0)
    }
}

extension Kernel {
    /// flush_tlb_range() on `mm`: invalidates the range in its TLB and charges a local flush,
    /// plus a shootdown when other CPUs may hold the mm's translations.
    func flushTLBRange(_ mm: MM, _ start: VirtAddr, _ end: VirtAddr) {
        let shootdown = mm.pageTable.tlb.flush(start, end)
        machine.clock.charge(.tlbFlush)
        if shootdown { machine.clock.charge(.tlbShootdown) }
    }
}
