// clflush(ADDR, LEN) for a process: CLFLUSH of every cache line of a user range, through the
// KeyID each page is mapped with (the line's tag in the non-coherent cache). The translation
// uses the page tables without faulting; an unmapped or non-present page raises SIGSEGV as
// CLFLUSH of an unmapped linear address does, after the pages before it were flushed.
//
// Invariant: after a successful clflush the range's dirty lines are in DRAM (phys_read sees
// the ciphertext of what was written through the mapping).
import KeyMMBase

extension Kernel {
    /// CLFLUSH of [addr, addr+length) as `task` sees it; nil, or the signal.
    package func clflushUser(_ task: TaskStruct, _ addr: VirtAddr, _ length: UInt64) -> MemSignal? {
        guard length > 0 else { return nil }
        let pt = task.mm.pageTable
        var a = addr.rawValue & ~UInt64(cacheLineSize - 1)
        let (endRaw, o) = addr.rawValue.addingReportingOverflow(length)
        let end = o ? UInt64.max : endRaw
        while a < end {
            guard a < userAddressLimit else { return .sigsegv(.mapErr) }
            let va = VirtAddr(a)
            let entry: UInt64
            switch pt.walk(va) {
            case .pte(_, let slot): entry = pt.raw(slot)
            case .huge(let ps): entry = hugeLeafTo4K(pt.raw(ps), va)
            case .none: return .sigsegv(.mapErr)
            }
            guard entry & PTEFlags.present.rawValue != 0 else { return .sigsegv(.mapErr) }
            let pageEnd = min((a | UInt64(pageSize - 1)) &+ 1, end)
            let pa = leafPhysAddr(entry, va)
            let n = Int(pageEnd - a)
            machine.clflush(pa, keyid: layout.decodeKeyID(entry), length: n)
            a = pageEnd
        }
        return nil
    }
}
