// The invariants the checker knows, the violations it reports, and the call context a
// violation is pinned to. One statement per invariant is in docs/invariants.md; this enum is
// the single list of names (the fuzzer, the shrinker and `#@ set` lines use these spellings).
//
// Invariants: `Invariant.allCases` is in report priority order (root causes before their
// symptoms: a mapping with the wrong KeyID is reported before the stale cache line it makes),
// so the first violation of a call names the mistake, not its echo.
import KeyMMBase

/// A named invariant of the model.
public enum Invariant: String, CaseIterable, Sendable, Hashable, Codable, CustomStringConvertible {
    /// A KeyID is programmed (a new key or CLEAR_KEY) while something still uses it.
    case keyidReuseWhileReferenced = "keyid-reuse-while-referenced"
    /// A KeyID is programmed (a new key or CLEAR_KEY) while cache lines are held under it.
    case keyidReprogrammedWithCachedLines = "keyid-reprogrammed-with-cached-lines"
    /// A KeyID's reference count differs from the references that exist (own + VMAs + pages).
    case keyidRefcountBalance = "keyid-refcount-balance"
    /// mprotect / pkey_mprotect changed the KeyID (encryption bits) of a PTE.
    case mprotectChangedEncryption = "mprotect-changed-encryption"
    /// A VMA took over address space of another KeyID (VMAs with different KeyIDs merged).
    case mergedAcrossKeyIDs = "merged-across-keyids"
    /// KSM shares one frame between mappings of different KeyIDs.
    case ksmCrossKeyID = "ksm-cross-keyid"
    /// The zero page (or huge zero page) is mapped with a KeyID other than 0.
    case encryptedZeroPage = "encrypted-zero-page"
    /// A present PTE's KeyID differs from its page's page_keyid or (normal VMAs) its VMA's.
    case pteKeyIDMismatch = "pte-keyid-mismatch"
    /// A page-table entry maps a frame outside every VMA of its mm.
    case pteOutsideVMA = "pte-outside-vma"
    /// Allocator and page-table accounting disagree (leaked, doubly owned or freed-while-mapped
    /// frames, mapcount or refcount wrong, allocator self-check).
    case frameAccounting = "frame-accounting"
    /// A TDX KeyID or SEV ASID handed out again while a line, a page or the firmware still holds it.
    case cvmIDReuseWhileHeld = "cvm-id-reuse-while-held"
    /// An SNP-private (RMP-assigned) page is still in the host's direct map.
    case privatePageInDirectMap = "private-page-in-direct-map"
    /// The host read, wrote or holds a cache line of a page private to a TD, the TDX module or a guest.
    case hostAccessToPrivatePage = "host-access-to-private-page"
    /// A page private to a TD, the TDX module or a guest is free in the host's page allocator.
    case privatePageFreed = "private-page-freed"
    /// A host page holds a guest's dirty cache line, or (X86_BUG_TDX_PW_MCE) a TD-owned or poisoned line.
    case guestStateOnHostPage = "guest-state-on-host-page"
    /// A line is poisoned (or machine-checks) without a non-TD partial write having hit it.
    case poisonWithoutPartialWrite = "poison-without-partial-write"
    /// A cache line of a frame is held under a KeyID other than the frame's page_keyid.
    case staleCacheLine = "stale-cache-line"
    /// The zero page's contents are not all zero.
    case zeroPageModified = "zero-page-modified"
    /// A read through one KeyID returned plaintext written through another.
    case crossKeyIDPlaintext = "cross-keyid-plaintext"
    /// DRAM holds plaintext written through an encrypting KeyID.
    case plaintextInDRAM = "plaintext-in-dram"
    /// SGX: an EPC page is mapped through a VMA that is not its own enclave's, or a SECS/VA page is mapped.
    case epcMappedOutsideEnclave = "epc-mapped-outside-enclave"
    /// SGX: a page-table entry still maps an EPC page whose enclave page was written back (or freed).
    case epcStalePTE = "epc-stale-pte"
    /// SGX: an enclave's mm_list is not exactly the mms its design says (each once, only live ones).
    case sgxMMList = "sgx-mm-list"
    /// SGX: a walker of an mm_list reached an encl_mm that was already freed.
    case srcuUseAfterFree = "srcu-use-after-free"
    /// SGX: EPC accounting does not add up (free list, owners, EPCM, child counts, VA slots).
    case epcAccounting = "epc-accounting"
    /// SGX: an enclave page came back from backing storage with contents other than it was written
    /// back with (a stale or tampered copy accepted), or its contents were lost.
    case enclaveContents = "enclave-contents"

    public var description: String { rawValue }

    /// Report order (lower first).
    public var priority: Int { Invariant.allCases.firstIndex(of: self) ?? 0 }

    /// The one-line statement (docs/invariants.md has the same text).
    public var statement: String {
        switch self {
        case .keyidReuseWhileReferenced: "a KeyID is never reprogrammed (new key or CLEAR_KEY) while a VMA or an allocated page still uses it, nor while its count is non-zero"
        case .keyidReprogrammedWithCachedLines: "a KeyID is never programmed (new key or CLEAR_KEY) while a cache line is held under it: its lines would be written back with the next key, or read by its next user"
        case .keyidRefcountBalance: "each KeyID's reference count equals the references that exist: its live key's own + one per VMA + one per allocated 4 KiB page with that page_keyid"
        case .encryptedZeroPage: "the zero page and the huge zero page are mapped only with KeyID 0 (no encryption bits)"
        case .mprotectChangedEncryption: "mprotect/pkey_mprotect never change the KeyID (encryption bits) of an entry that keeps its frame"
        case .ksmCrossKeyID: "a KSM page is mapped only through its own KeyID, from VMAs of that KeyID"
        case .mergedAcrossKeyIDs: "an address keeps its VMA's KeyID across every call but encrypt_mprotect and calls that replace the mapping (VMAs of different KeyIDs never merge)"
        case .pteKeyIDMismatch: "every PTE that maps a page carries that page's page_keyid and, in a normal VMA, the VMA's KeyID"
        case .pteOutsideVMA: "no page-table entry maps anything outside the VMAs of its mm"
        case .frameAccounting: "every mapped frame is allocated, its mapcount equals the entries mapping it, its refcount covers mappings + pins + page cache, and the allocator's own check passes"
        case .cvmIDReuseWhileHeld: "a TDX KeyID goes back to KVM's pool (or is keyed again) and an SEV ASID is recycled (or activated) only when no cache line is held under it, no page is assigned to it and the TDX module / SEV firmware has released it (FREEID / DF_FLUSH)"
        case .privatePageInDirectMap: "no page the RMP assigns to an SNP guest (or the firmware) is mapped in the host's direct map"
        case .hostAccessToPrivatePage: "a page private to a TD, the TDX module or an SEV guest is never read or written by the host and holds no cache line under any KeyID/ASID but its owner's"
        case .privatePageFreed: "a page private to a TD, the TDX module or an SEV guest is never free in the host's page allocator"
        case .guestStateOnHostPage: "a page the host owns holds no dirty line under a TDX KeyID or a guest ASID, and (with X86_BUG_TDX_PW_MCE) no TD-owned or poisoned line: removal and teardown write the guest's lines back and reset the page with 64-byte writes first"
        case .poisonWithoutPartialWrite: "a line is poisoned, and machine-checks when read, only after a non-TD partial write hit it while TD-owned; a full-line write clears it"
        case .staleCacheLine: "no cache line of an allocated frame is held under a KeyID other than the frame's page_keyid"
        case .zeroPageModified: "the zero pages read as zeros through KeyID 0"
        case .crossKeyIDPlaintext: "no read through KeyID B returns plaintext written through KeyID A != B (or through an earlier key of the same KeyID)"
        case .plaintextInDRAM: "DRAM never holds plaintext written through an encrypting KeyID"
        case .epcMappedOutsideEnclave: "an EPC page is mapped only by VMAs of its own enclave (never through another mapping), and SECS and VA pages are never mapped"
        case .epcStalePTE: "an enclave page that was written back (reclaimed) or freed has no page-table entry left in any mm"
        case .sgxMMList: "an enclave's mm_list holds each mm once, only live mms, and every mm that maps the enclave (vma-refcount: exactly those, each entry's count equal to its VMAs)"
        case .srcuUseAfterFree: "no walker of an enclave's mm_list reaches an encl_mm that was freed (the free waits for an SRCU grace period)"
        case .epcAccounting: "EPC accounting adds up: free list, page owners, EPCM validity, SECS child counts and VA slots agree"
        case .enclaveContents: "an enclave page reloaded from backing storage has the contents it was written back with, and no page's contents are lost"
        }
    }
}

/// Where a violation was seen: the call after which (or during which) the checker found it.
public struct CallSite: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The input file ("<fuzz>" for generated programs).
    public var file: String
    /// 1-based line in `file` (0: not from a file).
    public var line: Int
    /// The call in strace syntax, e.g. `1 mprotect(0x7f0000000000, 8192, PROT_READ)`.
    public var call: String
    /// Calls executed before this one (0-based index of the call in the run).
    public var index: Int
    public init(file: String, line: Int, call: String, index: Int) {
        self.file = file; self.line = line; self.call = call; self.index = index
    }
    public var description: String { "\(file):\(line)" }
}

/// One broken invariant, with everything needed to find the culprit.
public struct Violation: Sendable, Hashable, Codable, CustomStringConvertible {
    public var invariant: Invariant
    /// What exactly is wrong: the page/PFN, cache line, KeyID, VMA, process.
    public var detail: String
    /// The call after which it was found (nil before any call).
    public var site: CallSite?

    public init(_ invariant: Invariant, _ detail: String, site: CallSite? = nil) {
        self.invariant = invariant
        self.detail = detail
        self.site = site
    }

    /// `FILE:LINE: violation: NAME: detail` (the contract's report line).
    public var description: String {
        let place = site.map { "\($0.file):\($0.line): " } ?? ""
        return "\(place)violation: \(invariant.rawValue): \(detail)"
    }
}

/// Formatting helpers shared by the checks (hex the way the kernel prints).
enum Fmt {
    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
    static func va(_ v: VirtAddr) -> String { hex(v.rawValue) }
    static func pfn(_ p: PFN) -> String { "PFN " + hex(p.rawValue) }
    static func vma(_ start: VirtAddr, _ end: VirtAddr) -> String { "VMA \(hex(start.rawValue))-\(hex(end.rawValue))" }
}
