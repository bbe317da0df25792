// x86-64 page-table entries with the real bit layout, and pgprot_t.
//
// Bits: P(0) RW(1) US(2) PWT(3) PCD(4) A(5) D(6) PSE/PAT(7) G(8) ... physical-address
// field 12..(physBits-1), whose top `keyidBits` bits hold the KeyID (MKTME/TDX) or one
// bit the SME C-bit; protection key 62:59; NX 63.
//
// Invariant: the KeyID/encryption bits are part of _PAGE_CHG_MASK: `PageProt.modify`
// (pgprot_modify, what mprotect uses) never changes them.
import KeyMMBase
import KeyMMHardware

/// Where the physical address, the KeyID (or C-bit) and the flags sit in an entry.
public struct PTELayout: Hashable, Sendable {
    /// MAXPHYADDR as enumerated (e.g. 52).
    public let physBits: Int
    /// KeyID bits taken from the top of the physical-address field (MKTME), or 0.
    public let keyidBits: Int
    /// SME: position of the C-bit, or nil for MKTME/none.
    public let smeCBit: Int?

    public init(physBits: Int, keyidBits: Int, smeCBit: Int? = nil) {
        self.physBits = physBits
        self.keyidBits = keyidBits
        self.smeCBit = smeCBit
    }
    /// First bit of the KeyID field (physBits - keyidBits).
    @inlinable public var keyidShift: Int { physBits - keyidBits }
    /// Mask of the physical frame bits (12 .. keyidShift-1).
    @inlinable public var pfnMask: UInt64 {
        let top = smeCBit ?? keyidShift
        return ((UInt64(1) << UInt64(top)) - 1) & ~UInt64(0xFFF)
    }
    /// Mask of the KeyID / encryption bits in an entry.
    @inlinable public var encryptionMask: UInt64 {
        if let c = smeCBit { return UInt64(1) << UInt64(c) }
        guard keyidBits > 0 else { return 0 }
        return ((UInt64(1) << UInt64(keyidBits)) - 1) << UInt64(keyidShift)
    }
    @inlinable public func encode(keyid: KeyID) -> UInt64 {
        if let c = smeCBit { return keyid.isDefault ? 0 : UInt64(1) << UInt64(c) }
        return (UInt64(keyid.rawValue) << UInt64(keyidShift)) & encryptionMask
    }
    @inlinable public func decodeKeyID(_ raw: UInt64) -> KeyID {
        if let c = smeCBit { return KeyID(raw & (UInt64(1) << UInt64(c)) != 0 ? 1 : 0) }
        guard keyidBits > 0 else { return .tme }
        return KeyID(UInt16(truncatingIfNeeded: (raw & encryptionMask) >> UInt64(keyidShift)))
    }
}

/// PTE flag bits (_PAGE_*).
public struct PTEFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    public static let present = PTEFlags(rawValue: 1 << 0)
    public static let rw = PTEFlags(rawValue: 1 << 1)
    public static let user = PTEFlags(rawValue: 1 << 2)
    public static let pwt = PTEFlags(rawValue: 1 << 3)
    public static let pcd = PTEFlags(rawValue: 1 << 4)
    public static let accessed = PTEFlags(rawValue: 1 << 5)
    public static let dirty = PTEFlags(rawValue: 1 << 6)
    /// PSE in a PMD/PUD (huge page); PAT in a PTE.
    public static let pse = PTEFlags(rawValue: 1 << 7)
    public static let global = PTEFlags(rawValue: 1 << 8)
    /// Software bit 9 (_PAGE_BIT_SOFTW1): the model marks special (pfnmap/zero-page) entries.
    public static let special = PTEFlags(rawValue: 1 << 9)
    public static let softDirty = PTEFlags(rawValue: 1 << 11)
    /// _PAGE_PROTNONE: bit 8 (the global bit's position) in a non-present entry: a PROT_NONE
    /// (or NUMA-hinting) mapping that still holds its frame.
    public static let protNone = PTEFlags(rawValue: 1 << 8)
    /// _PAGE_PAT_LARGE: the PAT bit of a huge PMD (bit 12; bit 7 is PSE there).
    public static let patLarge = PTEFlags(rawValue: 1 << 12)
    public static let pkeyMask = PTEFlags(rawValue: 0xF << 59)
    public static let nx = PTEFlags(rawValue: 1 << 63)
    /// Flag bits mprotect keeps (_PAGE_CHG_MASK without the address field): PCD/PWT/PAT
    /// (cacheability), accessed, dirty, special, soft-dirty.
    public static let changeMask: PTEFlags = [.pwt, .pcd, .accessed, .dirty, .pse, .special, .softDirty]
}

/// pgprot_t: the non-address part of an entry plus the KeyID, as vm_page_prot holds it.
public struct PageProt: Hashable, Sendable {
    public var flags: PTEFlags
    public var keyid: KeyID
    @inlinable public init(flags: PTEFlags, keyid: KeyID = .tme) {
        self.flags = flags
        self.keyid = keyid
    }
    /// vm_get_page_prot(): the protection bits for VMA flags (private writable mappings
    /// start read-only so the first write faults for COW).
    public init(vmFlags: VMFlags, keyid: KeyID = .tme) {
        // protection_map[]: every entry has _PAGE_ACCESSED (x86 PAGE_* macros).
        var f: PTEFlags = [.present, .user, .accessed]
        if vmFlags.contains(.write) && vmFlags.contains(.shared) { f.insert(.rw) }
        if !vmFlags.contains(.exec) { f.insert(.nx) }
        if !vmFlags.contains(.read) && !vmFlags.contains(.write) && !vmFlags.contains(.exec) {
            f = [.protNone, .accessed]   // PAGE_NONE: not present, but the entry keeps its frame
        }
        f.insert(PTEFlags(rawValue: UInt64(vmFlags.pkey) << 59))
        self.init(flags: f, keyid: keyid)
    }
    /// pgprot_modify(old, new): take `newProt`'s permission bits, keep the bits in
    /// _PAGE_CHG_MASK from `self`, including the KeyID/encryption bits.
    @inlinable public func modify(_ newProt: PageProt) -> PageProt {
        PageProt(flags: PTEFlags(rawValue: (flags.rawValue & PTEFlags.changeMask.rawValue)
                                 | (newProt.flags.rawValue & ~PTEFlags.changeMask.rawValue)),
                 keyid: keyid)
    }
}

/// A page-table entry (PTE, or a PMD/PUD entry when `.pse` is set at those levels).
public struct PTE: Hashable, Sendable {
    public var raw: UInt64
    @inlinable public init(raw: UInt64) { self.raw = raw }
    public static let none = PTE(raw: 0)
    /// mk_pte(): frame + protection, KeyID in the top address bits.
    @inlinable public init(pfn: PFN, prot: PageProt, layout: PTELayout) {
        raw = (pfn.rawValue << pageShift) & layout.pfnMask | prot.flags.rawValue | layout.encode(keyid: prot.keyid)
    }
    @inlinable public var isNone: Bool { raw == 0 }
    @inlinable public var flags: PTEFlags { PTEFlags(rawValue: raw) }
    @inlinable public var isPresent: Bool { raw & PTEFlags.present.rawValue != 0 }
    @inlinable public var isWritable: Bool { raw & PTEFlags.rw.rawValue != 0 }
    @inlinable public func pfn(_ layout: PTELayout) -> PFN { PFN((raw & layout.pfnMask) >> pageShift) }
    @inlinable public func keyid(_ layout: PTELayout) -> KeyID { layout.decodeKeyID(raw) }
    @inlinable public var pkey: Int { Int((raw >> 59) & 0xF) }
    /// The entry's protection (flags + KeyID) without the frame.
    @inlinable public func prot(_ layout: PTELayout) -> PageProt {
        PageProt(flags: PTEFlags(rawValue: raw & ~(layout.pfnMask | layout.encryptionMask)), keyid: keyid(layout))
    }
}

// MARK: - Entry helpers (pte_* / pmd_* accessors and modifiers)

extension PTE {
    /// pte_protnone(): a non-present PROT_NONE entry that still holds its frame.
    @inlinable public var isProtNone: Bool {
        raw & (PTEFlags.present.rawValue | PTEFlags.protNone.rawValue) == PTEFlags.protNone.rawValue
    }
    /// Holds a frame (present or PROT_NONE): pte_present() in the kernel's sense.
    @inlinable public var mapsFrame: Bool {
        raw & (PTEFlags.present.rawValue | PTEFlags.protNone.rawValue) != 0
    }
    /// A swap entry: not none, not present, not PROT_NONE.
    @inlinable public var isSwap: Bool { raw != 0 && !mapsFrame }
    /// A huge (PSE) leaf at the PMD level.
    @inlinable public var isHuge: Bool { raw & PTEFlags.pse.rawValue != 0 && mapsFrame }
    @inlinable public var isDirty: Bool { raw & PTEFlags.dirty.rawValue != 0 }
    @inlinable public var isAccessed: Bool { raw & PTEFlags.accessed.rawValue != 0 }
    /// pte_special(): the zero page or a raw PFN (no struct page to account).
    @inlinable public var isSpecial: Bool { raw & PTEFlags.special.rawValue != 0 }

    /// pte_wrprotect().
    @inlinable public var writeProtected: PTE { PTE(raw: raw & ~PTEFlags.rw.rawValue) }
    /// pte_mkwrite() + pte_mkdirty().
    @inlinable public var madeWritableDirty: PTE { PTE(raw: raw | PTEFlags.rw.rawValue | PTEFlags.dirty.rawValue) }
    /// pte_mkclean().
    @inlinable public var cleaned: PTE { PTE(raw: raw & ~PTEFlags.dirty.rawValue) }
    /// pte_mkold().
    @inlinable public var madeOld: PTE { PTE(raw: raw & ~PTEFlags.accessed.rawValue) }

    /// pte_modify(pte, newprot): new permission bits from `newProt`; the frame, the KeyID /
    /// encryption bits and the other _PAGE_CHG_MASK bits (cacheability, A, D, special,
    /// soft-dirty) from the entry. `newProt.keyid` is ignored: a PTE keeps its own KeyID.
    @inlinable public func modified(_ newProt: PageProt, layout: PTELayout) -> PTE {
        let keep = layout.pfnMask | layout.encryptionMask | PTEFlags.changeMask.rawValue
        return PTE(raw: (raw & keep) | (newProt.flags.rawValue & ~keep))
    }

    /// The pre-fix pgprot_modify (docs/sources.md, seed 003's bug): the encryption bits come from `newProt`.
    @inlinable public func modifiedDroppingEncryption(_ newProt: PageProt, layout: PTELayout) -> PTE {
        let keep = layout.pfnMask | PTEFlags.changeMask.rawValue
        return PTE(raw: (raw & keep) | (newProt.flags.rawValue & ~keep) | layout.encode(keyid: newProt.keyid))
    }

    /// The same entry pointing at another frame (migration, COW, KSM).
    @inlinable public func with(pfn: PFN, layout: PTELayout) -> PTE {
        PTE(raw: (raw & ~layout.pfnMask) | ((pfn.rawValue << pageShift) & layout.pfnMask))
    }

    /// The same entry with another KeyID / encryption state.
    @inlinable public func with(keyid: KeyID, layout: PTELayout) -> PTE {
        PTE(raw: (raw & ~layout.encryptionMask) | layout.encode(keyid: keyid))
    }

    /// mk_zero_pte(): the shared zero page mapped read-only and special, with the KeyID bits
    /// stripped: the zero page is never encrypted, even in an encrypted VMA.
    @inlinable public static func zeroPage(_ pfn: PFN, prot: PageProt, layout: PTELayout) -> PTE {
        let flags = (prot.flags.rawValue & ~PTEFlags.rw.rawValue) | PTEFlags.special.rawValue
        return PTE(pfn: pfn, prot: PageProt(flags: PTEFlags(rawValue: flags), keyid: .tme), layout: layout)
    }

    // MARK: huge PMD entries

    /// mk_huge_pmd(): a 2 MiB leaf (PSE) for the block starting at `pfn`.
    @inlinable public init(hugePFN pfn: PFN, prot: PageProt, layout: PTELayout) {
        var f = prot.flags.rawValue
        // A 4 KiB prot's PAT bit (7) moves to bit 12 in a large entry (pgprot_4k_2_large).
        if f & PTEFlags.pse.rawValue != 0 { f = (f & ~PTEFlags.pse.rawValue) | PTEFlags.patLarge.rawValue }
        raw = ((pfn.rawValue << pageShift) & layout.pfnMask & ~PTEFlags.patLarge.rawValue)
            | f | PTEFlags.pse.rawValue | layout.encode(keyid: prot.keyid)
    }

    /// The first frame of a huge PMD leaf.
    @inlinable public func hugePFN(_ layout: PTELayout) -> PFN {
        PFN((raw & layout.pfnMask & ~PTEFlags.patLarge.rawValue) >> pageShift)
    }

    /// pmd_modify(): as `modified`, keeping PSE and PAT_LARGE (_HPAGE_CHG_MASK).
    @inlinable public func modifiedHuge(_ newProt: PageProt, layout: PTELayout) -> PTE {
        let keep = (layout.pfnMask | layout.encryptionMask | PTEFlags.changeMask.rawValue | PTEFlags.patLarge.rawValue)
        let newBits = newProt.flags.rawValue & ~keep & ~PTEFlags.pse.rawValue
        return PTE(raw: (raw & keep) | newBits)
    }

    /// The 4 KiB entry for subpage `index` of a huge PMD leaf (split_huge_pmd):
    /// permission bits (present/user/NX/pkey/PROT_NONE) from `vmPageProt`; RW, accessed,
    /// dirty and soft-dirty from the PMD; the KeyID / encryption bits and the cacheability
    /// bits (PWT, PCD, PAT) copied from the source PMD, not from vm_page_prot (docs/sources.md, seed 003).
    @inlinable public func splitEntry(index: Int, vmPageProt: PageProt, layout: PTELayout) -> PTE {
        let fromPMD: UInt64 = PTEFlags([.rw, .accessed, .dirty, .softDirty, .pwt, .pcd, .special]).rawValue
        var f = (vmPageProt.flags.rawValue & ~fromPMD & ~PTEFlags.pse.rawValue & ~PTEFlags.rw.rawValue)
            | (raw & fromPMD)
        if raw & PTEFlags.patLarge.rawValue != 0 { f |= PTEFlags.pse.rawValue }   // PAT: bit 12 → bit 7
        let frame = (hugePFN(layout).rawValue &+ UInt64(index)) << pageShift
        return PTE(raw: (frame & layout.pfnMask) | (raw & layout.encryptionMask) | (f & ~layout.encryptionMask & ~layout.pfnMask))
    }

    /// The pre-fix split (docs/sources.md, seed 003's concern): encryption and cacheability from vm_page_prot.
    @inlinable public func splitEntryFromVMAProt(index: Int, vmPageProt: PageProt, layout: PTELayout) -> PTE {
        let fromPMD: UInt64 = PTEFlags([.rw, .accessed, .dirty, .softDirty, .special]).rawValue
        let f = (vmPageProt.flags.rawValue & ~fromPMD & ~PTEFlags.pse.rawValue) | (raw & fromPMD)
        let frame = (hugePFN(layout).rawValue &+ UInt64(index)) << pageShift
        return PTE(raw: (frame & layout.pfnMask) | layout.encode(keyid: vmPageProt.keyid) | (f & ~layout.encryptionMask & ~layout.pfnMask))
    }
}

// MARK: - Swap entries

/// swp_entry_t as x86-64 stores it in a non-present PTE: type in bits 63:59, the offset
/// inverted in bits 58:9 (L1TF mitigation), bits 0 and 8 clear (not present, not PROT_NONE).
public struct SwapEntry: Hashable, Sendable {
    public var type: UInt8
    public var offset: UInt64
    public init(type: UInt8, offset: UInt64) { self.type = type; self.offset = offset }

    static let offsetBits: UInt64 = 50
    static let offsetMask: UInt64 = (1 << offsetBits) - 1

    /// The non-present PTE holding this entry.
    public var pte: PTE {
        PTE(raw: (UInt64(type & 0x1F) << 59) | (((~offset) & SwapEntry.offsetMask) << 9))
    }

    /// Decodes a swap PTE (nil if `pte` is not a swap entry, or is a PTE marker).
    public init?(_ pte: PTE) {
        guard pte.isSwap, !pte.isMarker else { return nil }
        type = UInt8(truncatingIfNeeded: pte.raw >> 59)
        offset = (~(pte.raw >> 9)) & SwapEntry.offsetMask
    }

    /// SWP_PTE_MARKER: the swap type of PTE markers (the model puts it at the top of the range;
    /// Linux's number depends on its configuration and is not visible to programs).
    public static let markerType: UInt8 = 31
    /// PTE_MARKER_GUARD (bit 2 of the marker): a guard region page (MADV_GUARD_INSTALL).
    public static let guardMarkerBits: UInt64 = 1 << 2
}

extension PTE {
    /// make_pte_marker(PTE_MARKER_GUARD): an access is SIGSEGV; ordinary zaps keep it.
    public static let guardMarker = SwapEntry(type: SwapEntry.markerType, offset: SwapEntry.guardMarkerBits).pte
    /// is_pte_marker(): a non-present entry of the marker swap type.
    @inlinable public var isMarker: Bool { isSwap && UInt8(truncatingIfNeeded: raw >> 59) == SwapEntry.markerType }
    /// is_guard_pte_marker().
    @inlinable public var isGuardMarker: Bool { raw == PTE.guardMarker.raw }
}
