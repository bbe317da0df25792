// The per-KeyID direct mappings of the MKTME series (RFC 17/62 "x86/mm: Calculate direct
// mapping size", 19/62 "Handle encrypted memory in page_to_virt() and __pa()"), and the boot
// decision that disables MKTME when they do not fit.
//
// Rules (the series, calculate_direct_mapping_size()):
//   available_va = 1 << (__VIRTUAL_MASK_SHIFT - 1)   (64 TiB with 4-level paging, 32 PiB with 5)
//   size = round_up(max_pfn << PAGE_SHIFT, 1 TiB); with KeyIDs: roundup_pow_of_two(size)
//   size > available_va / (nr_keyids + 1)  ->  "x86/mktme: Disabled. Not enough virtual address
//                                              space", mktme_disable()
//   otherwise available_va /= nr_keyids + 1, padding (CONFIG_MEMORY_PHYSICAL_PADDING TiB) is
//   added, rounded to a power of two, clamped to available_va, rounded down to a power of two;
//   direct_mapping_mask = size - 1.
//   page_to_virt(page) = PAGE_OFFSET + page_keyid(page) * direct_mapping_size + PFN_PHYS(page);
//   __pa(x) = (x - PAGE_OFFSET) & direct_mapping_mask.
//
// Invariants: a layout whose `mktmeEnabled` is false has one direct mapping (nrKeyIDs 0);
// `virtualAddress` and `translate` are inverse for every frame of memory and every KeyID of
// the layout. Everything is computed at boot from the machine configuration (deterministic).
import KeyMMBase
import KeyMMHardware

/// The kernel's direct-map layout with one alias per KeyID, and whether MKTME survived boot.
package struct DirectMapLayout: Sendable, Hashable {
    /// Paging levels (4: __VIRTUAL_MASK_SHIFT 47; 5: 56).
    package let pagingLevels: Int
    /// PAGE_OFFSET (__PAGE_OFFSET_BASE_L4 / _L5, no KASLR).
    package let pageOffset: UInt64
    /// Virtual address space the direct mappings may use in all (1/4 of the address space).
    package let availableVA: UInt64
    /// Bytes of RAM (max_pfn << PAGE_SHIFT).
    package let memory: UInt64
    /// MKTME KeyIDs enumerated (KeyID 0 excluded), before the decision.
    package let enumeratedKeyIDs: Int
    /// MKTME KeyIDs after the decision (0 when MKTME was disabled).
    package let nrKeyIDs: Int
    /// CONFIG_MEMORY_PHYSICAL_PADDING in TiB (the model's default is 0: no memory hotplug).
    package let paddingTiB: UInt64
    /// direct_mapping_size: the distance between two KeyIDs' aliases.
    package let directMappingSize: UInt64
    /// direct_mapping_mask (all ones when MKTME is off: __pa needs no mask).
    package let directMappingMask: UInt64
    /// Whether MKTME is usable after boot.
    package let mktmeEnabled: Bool
    /// Why MKTME is off (nil when enabled), as the kernel log would say it.
    package let disabledReason: String?

    package static let tib: UInt64 = 1 << 40

    /// calculate_direct_mapping_size() for `memory` bytes and `keyids` enumerated MKTME KeyIDs.
    /// `forceDisabled` is a reason MKTME is off regardless (e.g. `policy=none`, SME).
    package init(memory: UInt64, keyids: Int, pagingLevels: Int = 4, paddingTiB: UInt64 = 0,
                forceDisabled: String? = nil) {
        self.pagingLevels = pagingLevels == 5 ? 5 : 4
        self.pageOffset = self.pagingLevels == 5 ? 0xff11_0000_0000_0000 : 0xffff_8880_0000_0000
        let virtualMaskShift: UInt64 = self.pagingLevels == 5 ? 56 : 47
        var available = UInt64(1) << (virtualMaskShift - 1)
        self.availableVA = available
        self.memory = memory
        self.enumeratedKeyIDs = keyids
        self.paddingTiB = paddingTiB
        var nr = forceDisabled == nil ? max(keyids, 0) : 0
        var reason = forceDisabled
        var size = DirectMapLayout.roundUp(memory, DirectMapLayout.tib)
        if nr > 0 {
            size = DirectMapLayout.roundUpPowerOfTwo(size)
            if size > available / UInt64(nr + 1) {
                reason = "x86/mktme: Disabled. Not enough virtual address space (\(nr + 1) direct mappings of \(size >> 40) TiB > \(available >> 40) TiB); consider switching to 5-level paging"
                nr = 0
            } else {
                available /= UInt64(nr + 1)
            }
        }
        size &+= DirectMapLayout.tib &* paddingTiB
        if nr > 0 { size = DirectMapLayout.roundUpPowerOfTwo(size) }
        if size > available { size = available }
        if nr > 0 {
            size = DirectMapLayout.roundDownPowerOfTwo(size)
            self.directMappingMask = size &- 1
        } else {
            self.directMappingMask = ~0
        }
        self.directMappingSize = size
        self.nrKeyIDs = nr
        self.mktmeEnabled = nr > 0
        self.disabledReason = nr > 0 ? nil : (reason ?? (keyids == 0 ? "no MKTME KeyIDs enumerated" : nil))
    }

    /// The layout for a machine configuration: MKTME KeyIDs of the machine, its memory.
    package init(machine mc: MachineConfig, forceDisabled: String? = nil, pagingLevels: Int = 4) {
        let keyids = mc.mktmeKeyIDs.map { Int($0.upperBound) - Int($0.lowerBound) + 1 } ?? 0
        var reason = forceDisabled
        if reason == nil && mc.encryption == .sme { reason = "encryption=sme: no KeyIDs (one C-bit)" }
        if reason == nil && mc.encryption == .off { reason = "encryption=off" }
        self.init(memory: mc.memory.rawValue, keyids: keyids, pagingLevels: pagingLevels, forceDisabled: reason)
    }

    /// page_to_virt(): the kernel virtual address of byte `offset` of frame `pfn` through the
    /// direct mapping of `keyid` (KeyID 0 when MKTME is off).
    package func virtualAddress(_ pfn: PFN, keyid: KeyID, offset: Int = 0) -> UInt64 {
        let k = mktmeEnabled ? UInt64(keyid.rawValue) : 0
        return pageOffset &+ k &* directMappingSize &+ (pfn.rawValue << pageShift) &+ UInt64(offset)
    }

    /// The kernel page tables' view of a direct-map address: the physical address (__pa)
    /// and the KeyID of the alias it falls in. nil outside the direct mappings.
    package func translate(_ va: UInt64) -> (PhysAddr, KeyID)? {
        guard va >= pageOffset else { return nil }
        let off = va &- pageOffset
        let keyid = mktmeEnabled ? off / directMappingSize : 0
        guard keyid <= UInt64(nrKeyIDs) else { return nil }
        let pa = off & directMappingMask
        guard pa < memory else { return nil }
        return (PhysAddr(pa), KeyID(UInt16(truncatingIfNeeded: keyid)))
    }

    static func roundUp(_ v: UInt64, _ to: UInt64) -> UInt64 {
        let (s, o) = v.addingReportingOverflow(to - 1)
        return o ? UInt64.max & ~(to - 1) : s & ~(to - 1)
    }

    static func roundUpPowerOfTwo(_ v: UInt64) -> UInt64 {
        guard v > 1 else { return 1 }
        let lz = (v - 1).leadingZeroBitCount
        return lz == 0 ? UInt64(1) << 63 : UInt64(1) << UInt64(64 - lz)
    }

    static func roundDownPowerOfTwo(_ v: UInt64) -> UInt64 {
        guard v > 0 else { return 0 }
        return UInt64(1) << UInt64(63 - v.leadingZeroBitCount)
    }
}

extension Kernel {
    /// The kernel reading `count` bytes at `offset` of frame `pfn` (copy to swap, KSM compare,
    /// /proc readers...): the address comes from page_to_virt() with the frame's page_keyid(),
    /// the kernel's page tables translate it back to the frame and the alias's KeyID, and the
    /// CPU loads through that KeyID (so the data arrives decrypted).
    package func kernelRead(_ pfn: PFN, offset: Int = 0, count: Int) -> [UInt8] {
        let keyid = allocator.pageKeyID(pfn)
        let va = mktme.directMap.virtualAddress(pfn, keyid: keyid, offset: offset)
        guard let (pa, alias) = mktme.directMap.translate(va) else { return [UInt8](repeating: 0xFF, count: count) }
        return machine.read(pa, keyid: hardwareKeyID(alias, page: keyid), count: count)
    }

    /// The kernel writing `bytes` at `offset` of frame `pfn` through its direct-map alias.
    package func kernelWrite(_ pfn: PFN, offset: Int = 0, _ bytes: [UInt8]) {
        let keyid = allocator.pageKeyID(pfn)
        let va = mktme.directMap.virtualAddress(pfn, keyid: keyid, offset: offset)
        guard let (pa, alias) = mktme.directMap.translate(va) else { return }
        machine.write(pa, keyid: hardwareKeyID(alias, page: keyid), bytes: bytes)
    }

    /// The KeyID the CPU uses for a direct-map alias. With MKTME the alias is the KeyID; under
    /// SME (no KeyIDs) the direct map carries the C-bit, so an encrypted frame (page KeyID 1)
    /// is read through it.
    @inline(__always) func hardwareKeyID(_ alias: KeyID, page: KeyID) -> KeyID {
        mktme.directMap.mktmeEnabled ? alias : (layout.smeCBit != nil ? page : .tme)
    }
}
