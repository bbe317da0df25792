// Free-page poisoning (CONFIG_PAGE_POISONING, page_poison=1): a freed frame is filled with
// PAGE_POISON (0xaa) through its KeyID after free_encrypted_page has run (so through KeyID 0
// under wrapper/eager, through its kept KeyID under integrated), and checked at allocation
// through the same KeyID before the policy's prep. A byte that is not 0xaa means someone wrote
// to the page while it was free: the corruption is recorded in `anomalies` (verify() reports it).
//
// Invariants: a frame has PageState.poisoned exactly while it is free and was poisoned; the
// fill and the check go through the machine (cache, cost clock), as memset/memchr_inv would.
import KeyMMBase
import KeyMMHardware

/// PAGE_POISON.
public let pagePoisonByte: UInt8 = 0xaa

extension PageAllocator {
    /// kernel_poison_pages(): fills `count` frames from `pfn` with PAGE_POISON.
    func poisonPages(_ pfn: UInt64, count n: Int) {
        scratchPage.fill(pagePoisonByte)
        for i in 0..<n {
            let p = pfn + UInt64(i)
            unsafe scratchPage.withUnsafeMutableBytes { buf in
                unsafe machine.write(PFN(p).physAddr, keyid: KeyID(store[p].keyid), from: UnsafeRawBufferPointer(buf))
            }
            store[p].state |= PageState.poisoned
        }
    }

    /// check_poison_mem(): verifies a poisoned frame at allocation; clears the poisoned state.
    func checkPoison(_ pfn: UInt64) {
        let p = pfn
        unsafe scratchPage.withUnsafeMutableBytes { buf in unsafe machine.read(PFN(pfn).physAddr, keyid: KeyID(store[p].keyid), into: buf) }
        var first = -1, bad = 0
        for i in 0..<scratchPage.count where scratchPage[i] != pagePoisonByte {
            if first < 0 { first = i }
            bad += 1
        }
        if bad > 0 {
            anomaly("page poison corruption: \(PFN(pfn)) (\(KeyID(store[p].keyid))) has \(bad) byte(s) changed while free, first at offset \(first) (write after free)")
            poisonCorruptions += 1
        }
        store[p].state &= ~PageState.poisoned
    }
}
