// The driver's objects for one enclave (arch/x86/kernel/cpu/sgx/encl.h): struct sgx_encl (one per
// open of /dev/sgx_enclave), struct sgx_encl_page (one per added page, plus the SECS), struct
// sgx_va_page (512 version slots), struct sgx_encl_mm (one entry of mm_list), and the encrypted
// backing storage pages are written back to. docs/sources.md, "SGX driver (arch/x86/kernel/cpu/sgx)".
//
// Invariants: `pages` is keyed by the page's enclave linear page number (the driver's page_array
// is indexed by PFN_DOWN(desc)), so a page is found by the faulting address, not by the mmap
// offset; a page has an EPC page (resident) or a VA slot plus a backing entry (written back), or
// neither only after its contents were lost (a refused ELDU, a failed EWB: reported as anomalies);
// `refcount` is the kref: one for the open file description, one per encl_mm (notifier design),
// one per reclaimer batch or held walker using it; the enclave is freed when it reaches zero.
import KeyMMBase
import KeyMMHardware

/// struct sgx_encl_page.
package final class SGXEnclavePage {
    /// The page's enclave linear address (desc & PAGE_MASK).
    package let linear: UInt64
    /// vm_max_prot_bits: the VM_READ/WRITE/EXEC a mapping of the page may have (from its SECINFO).
    package let maxProt: VMFlags
    package var type: EPCPageType
    /// The EPC page while resident.
    package var epc: EPCPage?
    /// While written back: the VA page and slot holding its version.
    package var va: SGXVAPage?
    package var vaSlot = 0
    /// SGX_ENCL_PAGE_BEING_RECLAIMED.
    package var beingReclaimed = false
    package unowned let enclave: SGXEnclave

    init(enclave: SGXEnclave, linear: UInt64, maxProt: VMFlags, type: EPCPageType) {
        self.enclave = enclave
        self.linear = linear
        self.maxProt = maxProt
        self.type = type
    }
}

/// struct sgx_va_page: an EPC page of 512 version slots.
package final class SGXVAPage {
    package let epc: EPCPage
    private var used = [Bool](repeating: false, count: SGXVAPage.slotCount)
    package private(set) var usedCount = 0
    package static let slotCount = 512

    init(epc: EPCPage) { self.epc = epc }

    /// sgx_alloc_va_slot(): the first free slot (marked used).
    func allocSlot() -> Int {
        guard let i = used.firstIndex(of: false) else { return SGXVAPage.slotCount }
        used[i] = true
        usedCount += 1
        return i
    }

    /// sgx_free_va_slot().
    func freeSlot(_ i: Int) {
        guard i >= 0, i < SGXVAPage.slotCount, used[i] else { return }
        used[i] = false
        usedCount -= 1
    }

    var isFull: Bool { usedCount == SGXVAPage.slotCount }
}

/// One written-back page in the enclave's backing storage: the sealed contents in a page of
/// ordinary memory (the driver's shmem "SGX backing" file) and its PCMD.
package struct SGXBackingPage {
    /// The ordinary frame holding the 4 KiB of ciphertext (KeyID 0).
    package let frame: PFN
    package var pcmd: PCMD
}

/// struct sgx_encl_mm: one mm on an enclave's mm_list.
package final class SGXEnclMM: MMUNotifierOps {
    package let enclave: SGXEnclave
    package let mm: MM
    /// The RCU list link (kept when the entry is deleted, so a reader standing on it can go on).
    package var next: SGXEnclMM?
    /// On the list (list_add_rcu'd and not yet list_del_rcu'd).
    package var listed = false
    /// kfree'd. A walker that still reaches it is a use after free.
    package var freed = false
    /// vma-refcount design: one reference per VMA of the enclave in `mm`, plus walkers standing on it.
    package var refcount = 0
    package var walkerRefs = 0
    /// notifier design: the mmu_notifier subscription on `mm`.
    package var notifier: MMUNotifier?
    unowned let driver: SGXDriver
    /// When it was allocated (modeled cycles), for the bench's lifetimes.
    package var bornAt: UInt64 = 0

    init(driver: SGXDriver, enclave: SGXEnclave, mm: MM) {
        self.driver = driver
        self.enclave = enclave
        self.mm = mm
    }

    package func release(_ subscription: MMUNotifier, _ mm: MM) { driver.notifierRelease(self) }
    package func freeNotifier(_ subscription: MMUNotifier) { driver.notifierFree(self) }
}

/// struct sgx_encl.
package final class SGXEnclave {
    /// The open file description this enclave belongs to.
    package let openID: UInt64
    package var base: UInt64 = 0
    package var size: UInt64 = 0
    package var created = false
    package var initialized = false
    package var debug = false
    package var attributes: UInt64 = 0
    /// Attributes EINIT may grant without /dev/sgx_provision (SGX_ATTR_UNPRIV_MASK).
    package var attributesMask: UInt64 = SGXEnclave.unprivilegedAttributes
    package var eid: EnclaveID?
    /// page_cnt: the SECS and every added page (a VA page per 512 of them).
    package var pageCount = 0
    package var secsChildCount = 0
    /// page_array, by linear page number.
    package var pages: [UInt64: SGXEnclavePage] = [:]
    /// The SECS (its backing slot is the page after the enclave's last).
    package var secs: SGXEnclavePage!
    /// va_pages: the head has free slots (full pages move to the tail).
    package var vaPages: [SGXVAPage] = []
    /// mm_list: an RCU list (head first), its version and its SRCU.
    package var mmHead: SGXEnclMM?
    package var mmListVersion: UInt64 = 0
    package let srcu = SRCUStruct()
    package var refcount = 1
    package var freed = false
    /// Backing storage by page index (offset / 4 KiB; the SECS at size / 4 KiB).
    package var backing: [UInt64: SGXBackingPage] = [:]
    /// The sealed copy of each page written back before its current one: what someone who saved
    /// the backing storage earlier could put back (`sgx_tamper(..., SGX_TAMPER_REPLAY)`, model only).
    package var olderSealed: [UInt64: SealedPage] = [:]
    package var lastSealed: [UInt64: SealedPage] = [:]
    /// The vm_ops (and vm_private_data) of this enclave's VMAs.
    package var ops: SGXVMOps!

    /// SGX_ATTR_DEBUG | MODE64BIT | KSS | AEXNOTIFY (arch/x86/include/asm/sgx.h SGX_ATTR_UNPRIV_MASK).
    package static let unprivilegedAttributes: UInt64 = 0x2 | 0x4 | 0x80 | 0x400

    init(openID: UInt64) { self.openID = openID }

    /// The entries on mm_list now, head first.
    package var mmList: [SGXEnclMM] {
        var out: [SGXEnclMM] = []
        var cur = mmHead
        while let e = cur, out.count < 1 << 20 { out.append(e); cur = e.next }
        return out
    }

    /// The backing index of a page (PFN_DOWN(desc - base)); the SECS's is PFN_DOWN(size).
    func backingIndex(_ p: SGXEnclavePage) -> UInt64 {
        p === secs ? size >> pageShift : (p.linear &- base) >> pageShift
    }
}
