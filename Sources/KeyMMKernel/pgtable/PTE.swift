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
        var f: PTEFlags = [.present, .user]
        if vmFlags.contains(.write) && vmFlags.contains(.shared) { f.insert(.rw) }
        if !vmFlags.contains(.exec) { f.insert(.nx) }
        if !vmFlags.contains(.read) && !vmFlags.contains(.write) && !vmFlags.contains(.exec) {
            f = [.nx]   // PROT_NONE: _PAGE_PROTNONE (not present, but the entry is kept)
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
