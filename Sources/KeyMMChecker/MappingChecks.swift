// The page-table half of the sweep: every entry of every mm that holds a frame, against its
// VMA, its page's page_keyid, the zero pages and KSM (encrypted-zero-page, ksm-cross-keyid,
// pte-keyid-mismatch, pte-outside-vma); and the census the frame and KeyID checks use (how many
// entries map each frame, how many VMAs use each KeyID).
//
// Rules: the zero page and the huge zero page are mapped only with KeyID 0; other special
// entries (raw PFNs: vmf_insert_pfn_prot, vvar) carry their own encryption bits and are exempt
// (their frames are exempt from the cache check too); every other entry's KeyID equals its
// page's page_keyid, and in a normal VMA (no vm_ops, not VM_PFNMAP/MIXEDMAP/IO) the VMA's KeyID
// — except under SME, where the C-bit is a per-page attribute and a VMA's KeyID stays 0. A KSM
// page is mapped only with its own KeyID from VMAs of that KeyID.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// The allocator's allocated blocks, and allocated 4 KiB frames per page_keyid.
struct AllocatedFrames {
    var blocks: [(head: PFN, order: PageOrder)] = []
    var pagesPerKeyID: [Int]
    var count = 0
}

/// How page tables use frames and VMAs use KeyIDs.
struct MappingCensus {
    /// Frame -> entries mapping it (a huge leaf counts on its first frame, as the model's mapcount).
    let uses: FrameUseTable
    var vmasPerKeyID: [Int]
    /// The first VMA seen per KeyID (for reports).
    var firstVMA: [Int: (ProcessID, VMA)] = [:]
    /// Entries that map EPC frames (SGXChecks.swift checks them against the driver).
    var epcLeaves: [EPCLeaf] = []
}

extension InvariantChecker {
    func collectAllocatedFrames(_ work: inout Int) -> AllocatedFrames {
        let alloc = kernel.allocator
        var out = AllocatedFrames(pagesPerKeyID: [Int](repeating: 0, count: Int(kernel.machine.config.maxKeyID) + 1))
        allocated.clear()
        alloc.forEachAllocatedBlock { head, order in
            out.blocks.append((head, order))
            let n = order.pages
            for i in 0..<n {
                let f = head.rawValue &+ UInt64(i)
                allocated.insert(f)
                let k = Int(alloc.pageKeyID(PFN(f)).rawValue)
                if k < out.pagesPerKeyID.count { out.pagesPerKeyID[k] += 1 }
            }
            out.count += n
        }
        work += out.count
        return out
    }

    /// Whether a VMA is "normal" for the KeyID rule (anonymous or file, no driver hooks).
    @inline(__always) func isNormalVMA(_ v: VMA) -> Bool {
        v.vmOps == nil && v.vmFlags.rawValue & InvariantChecker.driverFlags == 0
    }
    static let driverFlags = VMFlags([.pfnMap, .mixedMap, .io]).rawValue

    func sweepPageTables(_ work: inout Int) -> MappingCensus {
        let alloc = kernel.allocator
        let maxK = Int(kernel.machine.config.maxKeyID)
        frameUses.reset()
        var census = MappingCensus(uses: frameUses, vmasPerKeyID: [Int](repeating: 0, count: maxK + 1))
        var exemptFrames = exempt
        exemptFrames.clear()
        defer { exempt = exemptFrames }
        let allocatedFrames = allocated
        let zero = kernel.pgtable.zeroPFN
        let hugeZero = kernel.pgtable.hugeZeroPFN
        let sme = kernel.smeActive
        let sgxUnit = kernel.machine.sgx
        var ksmSeen: [UInt64: (keyid: UInt16, where_: String)] = [:]
        for (pid, mm) in kernel.distinctMMs {
            let vmas = mm.allVMAs
            work += vmas.count
            for v in vmas where !v.keyid.isDefault {
                let k = Int(v.keyid.rawValue)
                if k < census.vmasPerKeyID.count {
                    census.vmasPerKeyID[k] += 1
                    if census.firstVMA[k] == nil { census.firstVMA[k] = (pid, v) }
                }
            }
            PageWalk.forEachEntry(in: mm, vmas: vmas) { leaf, vma in
                work += 1
                let va = leaf.address.rawValue
                var place: String { "pid \(pid) VA \(Fmt.hex(va))" }
                if let vma {
                    if leaf.isHuge && leaf.end > vma.vmEnd {
                        report(.pteOutsideVMA, key: "\(pid):\(va)",
                               "\(place): a huge PMD maps 2 MiB but its \(Fmt.vma(vma.vmStart, vma.vmEnd)) ends at \(Fmt.va(vma.vmEnd))")
                    }
                } else {
                    report(.pteOutsideVMA, key: "\(pid):\(va)",
                           "\(place): entry maps \(Fmt.pfn(leaf.pfn)) (\(leaf.keyid)) but no VMA covers the address")
                }
                // The zero pages.
                let isZero = leaf.isHuge ? leaf.pfn == hugeZero
                    : (leaf.pfn == zero || (hugeZero.map { leaf.pfn >= $0 && leaf.pfn.rawValue < $0.rawValue &+ UInt64(PageOrder.pmd.pages) } ?? false))
                if isZero {
                    if !leaf.keyid.isDefault {
                        report(.encryptedZeroPage, key: "\(pid):\(va)",
                               "\(place): the \(leaf.isHuge ? "huge " : "")zero page \(Fmt.pfn(leaf.pfn)) is mapped with \(leaf.keyid)"
                                + (vma.map { " (\(Fmt.vma($0.vmStart, $0.vmEnd)) has \($0.keyid))" } ?? ""))
                    }
                    return
                }
                if leaf.isSpecial {
                    if let unit = sgxUnit, let page = unit.page(of: leaf.pfn) {
                        census.epcLeaves.append(EPCLeaf(pid: pid, va: leaf.address, page: page, vma: vma))
                        return
                    }
                    for i in 0..<leaf.pages { exemptFrames.insert(leaf.pfn.rawValue &+ UInt64(i)) }
                    return
                }
                let f = leaf.pfn.rawValue
                census.uses.add(f, pid: pid.rawValue, va: va)
                guard allocatedFrames.contains(f) else { return }   // reported by frame accounting
                let pageK = alloc.pageKeyID(leaf.pfn)
                let vmaK: KeyID? = (vma.map { isNormalVMA($0) } ?? false) && !sme ? vma?.keyid : nil
                var vmaText: String { vma.map { Fmt.vma($0.vmStart, $0.vmEnd) } ?? "no VMA" }
                if alloc.flags(leaf.pfn).contains(.ksm) {
                    var here: String { "\(place) (\(vmaText)\(vmaK.map { ", \($0)" } ?? "")) maps it with \(leaf.keyid)" }
                    if leaf.keyid != pageK || (vmaK != nil && vmaK != pageK) {
                        report(.ksmCrossKeyID, key: "\(f)",
                               "KSM page \(Fmt.pfn(leaf.pfn)) has page_keyid \(pageK.rawValue) but \(here)")
                    } else if let first = ksmSeen[f], first.keyid != leaf.keyid.rawValue {
                        report(.ksmCrossKeyID, key: "\(f)",
                               "KSM page \(Fmt.pfn(leaf.pfn)) is shared across KeyIDs: \(first.where_); \(here)")
                    } else if ksmSeen[f] == nil {
                        ksmSeen[f] = (leaf.keyid.rawValue, here)
                    }
                    return
                }
                if leaf.keyid != pageK {
                    report(.pteKeyIDMismatch, key: "\(pid):\(va)",
                           "\(place) (\(vmaText)): the entry has \(leaf.keyid) but \(Fmt.pfn(leaf.pfn)) has page_keyid \(pageK.rawValue)")
                } else if let vk = vmaK, vk != leaf.keyid {
                    report(.pteKeyIDMismatch, key: "\(pid):\(va)",
                           "\(place): the entry and \(Fmt.pfn(leaf.pfn)) have \(leaf.keyid) but their \(vmaText) has \(vk)")
                }
                if leaf.isHuge {
                    // Every subpage of a THP carries the head's KeyID.
                    for i in 1..<leaf.pages where alloc.pageKeyID(leaf.pfn.advanced(by: i)) != pageK {
                        report(.pteKeyIDMismatch, key: "\(pid):\(va):sub",
                               "\(place): huge entry \(leaf.keyid) maps \(Fmt.pfn(leaf.pfn.advanced(by: i))) (subpage \(i)) whose page_keyid is \(alloc.pageKeyID(leaf.pfn.advanced(by: i)).rawValue)")
                        break
                    }
                }
            }
        }
        return census
    }
}
