// CacheEventTap: what the checker hears from the cache while a call runs. The cache calls its
// observer on every fill, write-back and invalidation (zeroing one page is 64 fills), so this is
// the checker's hottest path and is kept to a few loads and a rare append:
//
// - the observer closure captures the tap strongly and nothing else; the tap holds no reference
//   to the checker but a weak one it loads only on the rare paths (a fill through a KeyID other
//   than its frame's page_keyid, and every event while a confidential VM is up), so a common event
//   costs no weak load and no retain of the checker;
// - it records into arrays the checker drains after the call (`plaintextWriteBacks`,
//   `wrongKeyIDFills`), and appends to the shadow's per-call lists only for the zero pages and for
//   frames the last cache check found stale (`watchInvalidations`, refreshed by the checker after
//   every call);
// - what it records, and when, is exactly what the checker recorded itself before the tap
//   existed: a call's findings are the same.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

final class CacheEventTap {
    let engine: EncryptionEngine
    let alloc: PageAllocator
    let model: CheckerShadow
    /// Physical memory the OS manages: the EPC above it has no struct page.
    let osMemory: UInt64
    /// Whether fills are checked against page_keyid (`CheckerOptions.checkFills`).
    let checkFills: Bool
    /// The checker, for the rare paths (a wrong-KeyID fill, confidential-VM bookkeeping).
    weak var checker: InvariantChecker?
    /// A TDX module or SEV firmware is up: every event also goes to the CVM checks.
    var cvmActive = false
    /// The shadow has stale frames or suspect zero-page lines: invalidations are looked up.
    var watchInvalidations = false
    /// Some KeyID reference event (get, put, programming, destroy) happened during the call (set
    /// by the checker's KeyID observer; what lets the allocator's self-check skip a quiet call).
    var keyidReferencesMoved = false

    /// Lines written back through a plaintext KeyID during the call (line numbers).
    var plaintextWriteBacks: [UInt64] = []
    /// Fills through a KeyID other than the frame's page_keyid: (line address, KeyID, page_keyid).
    var wrongKeyIDFills: [(UInt64, KeyID, KeyID)] = []

    init(engine: EncryptionEngine, alloc: PageAllocator, model: CheckerShadow, osMemory: UInt64, checkFills: Bool) {
        self.engine = engine
        self.alloc = alloc
        self.model = model
        self.osMemory = osMemory
        self.checkFills = checkFills
    }

    /// Forgets one call's records.
    func clear() {
        plaintextWriteBacks.removeAll(keepingCapacity: true)
        wrongKeyIDFills.removeAll(keepingCapacity: true)
    }

    func record(_ event: CacheEvent) {
        switch event {
        case .writeBack(let pa, let k):
            if engine.isPlaintext(k) { plaintextWriteBacks.append(pa.rawValue >> 6) }
            if model.inZeroPage(pa.pfn.rawValue) { model.zeroLines.append(pa.rawValue >> 6); model.zeroWrittenBack.append(pa.rawValue >> 6) }
            if cvmActive { checker?.noteCVMWriteBack(pa, k) }
        case .fill(let pa, let k):
            if cvmActive { checker?.noteCVMFill(pa, k) }
            guard checkFills, pa.rawValue < osMemory else { return }
            let pk = alloc.pageKeyID(pa.pfn)
            if pk != k, wrongKeyIDFills.count < 64, let c = checker, !c.isExempt(pa.pfn.rawValue), !c.isCVMTag(k) {
                wrongKeyIDFills.append((pa.rawValue, k, pk))
            }
        case .invalidate(let pa, _):
            guard watchInvalidations else { return }
            let f = pa.pfn.rawValue
            if !model.staleFrames.isEmpty && model.staleFrames.contains(f) { model.cacheFrames.insert(f) }
            if !model.zeroSuspect.isEmpty && model.zeroSuspect.contains(pa.rawValue >> 6) { model.zeroLines.append(pa.rawValue >> 6) }
        }
    }
}
