// PageTable: one mm's x86-64 4-level radix tree (PGD → PUD → PMD → PTE, 512 entries each).
//
// Storage: every table is 512 `UInt64` entries in one flat pool (`storage`, an OwnedBuffer); table 0 is the
// PGD. Entries hold the real bit layout of `PTE` (present, RW, user, A, D, PSE, NX, pkey bits
// 62:59, the physical-address field with the KeyID bits). A non-leaf entry is
// `_PAGE_TABLE` (present|RW|user|accessed|dirty) with the *pool index* of the next table
// in its address field: page-table pages are modeled without consuming simulated frames
// (documented in docs/page-tables.md). Levels are allocated lazily.
//
// Invariants: `used[t]` counts the non-none entries of table t; a slot is the index of an
// entry in `storage` (table * 512 + index), stable across pool growth; a PMD entry with
// `.pse` is a huge (2 MiB) leaf and has no PTE table below it.
import KeyMMBase

/// Entries per table at every level.
public let ptrsPerTable = 512
/// Bytes mapped by one PMD entry (2 MiB).
public let pmdSize: UInt64 = 1 << 21
/// Mask of the offset inside a PMD-mapped range.
public let pmdMask: UInt64 = pmdSize - 1
/// Base pages per PMD (HPAGE_PMD_NR).
public let hpagePMDNr = 512

/// One mm's page tables (struct mm_struct's pgd and everything below it).
public final class PageTable {
    /// Where the frame and KeyID bits sit in an entry.
    public let layout: PTELayout
    /// The mm's TLB (translations cached by the CPUs running this mm).
    public let tlb: TLB

    @usableFromInline var storage: OwnedBuffer<UInt64>
    @usableFromInline var used: OwnedBuffer<UInt16>
    @usableFromInline var capacity: Int        // tables the pool can hold
    @usableFromInline var highWater: Int       // tables ever handed out (next fresh index)
    @usableFromInline var freeTables: [Int32] = []
    /// Tables currently allocated, the PGD included (what VmPTE would count, times 4 KiB).
    public private(set) var tableCount: Int = 1

    /// _PAGE_TABLE: the flags of a non-leaf entry.
    public static let tableFlags: UInt64 = PTEFlags([.present, .rw, .user, .accessed, .dirty]).rawValue

    /// Creates an empty address space (one zeroed PGD).
    public init(layout: PTELayout) {
        self.layout = layout
        self.tlb = TLB()
        capacity = 16
        storage = OwnedBuffer(repeating: 0, count: capacity * ptrsPerTable)
        used = OwnedBuffer(repeating: 0, count: capacity)
        highWater = 1
    }

    // MARK: indices

    @inlinable static func pgdIndex(_ va: UInt64) -> Int { Int((va >> 39) & 511) }
    @inlinable static func pudIndex(_ va: UInt64) -> Int { Int((va >> 30) & 511) }
    @inlinable static func pmdIndex(_ va: UInt64) -> Int { Int((va >> 21) & 511) }
    @inlinable static func pteIndex(_ va: UInt64) -> Int { Int((va >> 12) & 511) }

    /// The table a non-leaf entry points at.
    @inlinable func child(_ entry: UInt64) -> Int { Int(truncatingIfNeeded: (entry & layout.pfnMask) >> pageShift) }

    // MARK: entry access

    /// The entry in `slot`.
    @inlinable public subscript(slot: Int) -> PTE {
        get { PTE(raw: storage[slot]) }
    }

    /// Raw entry in `slot`.
    @inlinable public func raw(_ slot: Int) -> UInt64 { storage[slot] }

    /// Writes an entry, keeping the table's used count.
    @inlinable public func set(_ slot: Int, _ pte: PTE) {
        let old = storage[slot]
        storage[slot] = pte.raw
        if (old == 0) != (pte.raw == 0) {
            let t = slot >> 9
            if old == 0 { used[t] &+= 1 } else { used[t] &-= 1 }
        }
    }

    /// ORs bits into a present entry (hardware setting accessed/dirty); used count unchanged.
    @inlinable public func setBits(_ slot: Int, _ bits: UInt64) {
        storage[slot] |= bits
    }

    /// Clears bits of an entry that stays non-none.
    @inlinable public func clearBits(_ slot: Int, _ bits: UInt64) {
        storage[slot] &= ~bits
    }

    // MARK: walks

    /// The slot of the PMD entry for `va`, or nil if the PGD/PUD level is missing.
    @inlinable public func pmdSlot(_ va: VirtAddr) -> Int? {
        let a = va.rawValue
        let g = storage[PageTable.pgdIndex(a)]
        guard g & 1 != 0 else { return nil }
        let pud = child(g)
        let u = storage[pud << 9 | PageTable.pudIndex(a)]
        guard u & 1 != 0 else { return nil }
        return child(u) << 9 | PageTable.pmdIndex(a)
    }

    /// The result of a software walk to the leaf for one address.
    public enum Walk: Equatable {
        /// No table at some level (nothing mapped).
        case none
        /// A huge PMD entry maps the address (slot of the PMD entry).
        case huge(pmdSlot: Int)
        /// A PTE slot exists (the entry may still be none); with its PMD slot.
        case pte(pmdSlot: Int, pteSlot: Int)
    }

    /// Walks to the leaf for `va` without allocating.
    @inlinable public func walk(_ va: VirtAddr) -> Walk {
        guard let ps = pmdSlot(va) else { return .none }
        let m = storage[ps]
        guard m != 0 else { return .none }
        if m & PTEFlags.pse.rawValue != 0 { return .huge(pmdSlot: ps) }
        guard m & 1 != 0 else { return .none }
        return .pte(pmdSlot: ps, pteSlot: child(m) << 9 | PageTable.pteIndex(va.rawValue))
    }

    /// The PTE slot for `va` if its table exists and the PMD is not huge.
    @inlinable public func pteSlot(_ va: VirtAddr) -> Int? {
        if case .pte(_, let s) = walk(va) { return s }
        return nil
    }

    /// The PMD slot for `va`, allocating the PUD and PMD tables as needed.
    public func allocPMDSlot(_ va: VirtAddr) -> Int {
        let a = va.rawValue
        let gs = PageTable.pgdIndex(a)
        if storage[gs] & 1 == 0 { set(gs, PTE(raw: tableEntry(allocTable()))) }
        let us = child(storage[gs]) << 9 | PageTable.pudIndex(a)
        if storage[us] & 1 == 0 { set(us, PTE(raw: tableEntry(allocTable()))) }
        return child(storage[us]) << 9 | PageTable.pmdIndex(a)
    }

    /// The PTE slot for `va`, allocating missing levels (pte_alloc); nil if a huge PMD
    /// maps the address (the caller must split it first).
    public func allocPTESlot(_ va: VirtAddr) -> Int? {
        let ps = allocPMDSlot(va)
        var m = storage[ps]
        if m & PTEFlags.pse.rawValue != 0 { return nil }
        if m & 1 == 0 {
            m = tableEntry(allocTable())
            set(ps, PTE(raw: m))
        }
        return child(m) << 9 | PageTable.pteIndex(va.rawValue)
    }

    /// Installs a fresh PTE table under an empty PMD slot and returns the table index.
    public func allocPTETable(under pmdSlot: Int) -> Int {
        let t = allocTable()
        set(pmdSlot, PTE(raw: tableEntry(t)))
        return t
    }

    /// The first PTE slot of the table a (non-huge, present) PMD entry points to.
    @inlinable public func pteTableBase(_ pmdEntry: UInt64) -> Int { child(pmdEntry) << 9 }

    /// Whether a PMD entry points at a PTE table (present, not huge).
    @inlinable public static func isTable(_ entry: UInt64) -> Bool {
        entry & 1 != 0 && entry & PTEFlags.pse.rawValue == 0
    }

    @inlinable func tableEntry(_ table: Int) -> UInt64 {
        (UInt64(table) << pageShift) | PageTable.tableFlags
    }

    // MARK: table pool

    func allocTable() -> Int {
        tableCount += 1
        if let t = freeTables.popLast() { return Int(t) }
        if highWater == capacity { grow() }
        let t = highWater
        highWater += 1
        return t
    }

    private func grow() {
        let newCap = capacity * 2
        storage.grow(to: newCap * ptrsPerTable, filling: 0)
        used.grow(to: newCap, filling: 0)
        capacity = newCap
    }

    /// Frees an (empty) table and clears the entry pointing at it.
    func freeTable(_ table: Int, parentSlot: Int) {
        storage.fill(0, from: table << 9, count: ptrsPerTable)
        used[table] = 0
        set(parentSlot, .none)
        freeTables.append(Int32(table))
        tableCount -= 1
    }

    /// Non-none entries in a table.
    @inlinable public func usedEntries(table: Int) -> Int { Int(used[table]) }

    /// free_pgtables() for [start, end): frees PTE, PMD and PUD tables that are empty and
    /// touch the range. (The kernel frees only tables wholly inside the unmapped gap; an
    /// empty table maps nothing, so freeing it earlier changes only the table count.)
    public func freeEmptyTables(_ start: VirtAddr, _ end: VirtAddr) {
        var a = start.rawValue & ~pmdMask
        while a < end.rawValue {
            let next = a &+ pmdSize
            if let ps = pmdSlot(VirtAddr(a)), PageTable.isTable(storage[ps]) {
                let t = child(storage[ps])
                if used[t] == 0 { freeTable(t, parentSlot: ps) }
            }
            a = next
        }
        // PMD and PUD tables: free any that became empty.
        var b = start.rawValue & ~((UInt64(1) << 30) - 1)
        while b < end.rawValue {
            let a64 = b
            let gs = PageTable.pgdIndex(a64)
            let g = storage[gs]
            if g & 1 != 0 {
                let us = child(g) << 9 | PageTable.pudIndex(a64)
                let u = storage[us]
                if u & 1 != 0 && used[child(u)] == 0 { freeTable(child(u), parentSlot: us) }
                if used[child(g)] == 0 { freeTable(child(g), parentSlot: gs) }
            }
            b = b &+ (1 << 30)
        }
    }

    /// Drops every table and entry (exit_mmap's free_pgtables for the whole mm).
    public func reset() {
        storage.fill(0)
        used.fill(0)
        highWater = 1
        freeTables.removeAll(keepingCapacity: true)
        tableCount = 1
        tlb.flushAll()
    }

    // MARK: iteration

    /// Calls `body(pmdSlot, address, end)` for each PMD-sized step of [start, end) whose PMD
    /// slot exists (PGD/PUD present); `address..<end` is the part of the step in the range.
    @inlinable public func forEachPMD(_ start: VirtAddr, _ end: VirtAddr,
                                      _ body: (_ pmdSlot: Int, _ addr: UInt64, _ end: UInt64) -> Void) {
        var a = start.rawValue
        let e = end.rawValue
        while a < e {
            let next = min((a | pmdMask) &+ 1, e)
            if let ps = pmdSlot(VirtAddr(a)) {
                body(ps, a, next)
                a = next
            } else {
                // Skip to the next PUD (1 GiB) boundary: nothing is mapped below a missing level.
                let pudNext = (a | ((UInt64(1) << 30) - 1)) &+ 1
                a = min(max(pudNext, next), e)
            }
        }
    }
}
