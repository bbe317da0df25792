// CostEvents: the vocabulary of the cost clock. A `CostEvent` is an action that costs modeled
// cycles (its price comes from the `CostProfile`) and is also counted; a `Counter` is only counted.
//
// Invariants: raw values are dense (0..<allCases.count) because the clock stores prices and counts
// in flat arrays indexed by them; every case has a unique snake_case `name` (its key in a cost
// profile JSON file) and a unique `counterName` (its key in counter snapshots and bench JSON).
//
// APPEND-ONLY: other layers add cases at the END of the marked sections. When you add a case, also
// add it to `name`, `counterName` and `CostProfile.defaultCycles(for:)` (the compiler will insist),
// and document its default price and source in docs/cost-model.md.

/// An action that costs modeled cycles. `clock.charge(.event, n)` adds `n * price` cycles and counts `n`.
public enum CostEvent: Int, CaseIterable, Sendable {
    // ---- Hardware (owned by KeyMMHardware) ----
    /// A CPU load or store of one cache line that hits in the cache.
    case cacheAccess
    /// A cache miss: one line read from DRAM (fill).
    case dramFill
    /// One dirty line written back to DRAM (eviction, clflush, wbinvd).
    case writeBack
    /// The memory-encryption engine encrypted one 64-byte line (on write-back).
    case encryptLine
    /// The memory-encryption engine decrypted one 64-byte line (on fill).
    case decryptLine
    /// CLFLUSH/CLFLUSHOPT of one line (hit or not; the write-back is charged separately).
    case clflushLine
    /// WBINVD (fixed part; write-backs are charged separately).
    case wbinvd
    /// Zeroing one 4 KiB frame with full-line stores (clear_page).
    case zeroPage
    /// Copying one 4 KiB frame (copy_page: 64 loads and 64 full-line stores).
    case copyPage
    /// One PCONFIG (MKTME_KEY_PROGRAM) executed on one package.
    case pconfig

    // ---- Kernel (pre-declared by KeyMMHardware for KeyMMKernel/KeyMMKeys) ----
    /// System-call entry and exit.
    case syscall
    /// Page-fault exception entry/exit and handler dispatch (not the work done in it).
    case pageFault
    /// One page-table walk (software lookup of a PTE).
    case ptWalk
    /// Writing one page-table entry.
    case pteUpdate
    /// A local TLB flush (INVLPG or CR3 reload).
    case tlbFlush
    /// A TLB shootdown (IPI round to other CPUs).
    case tlbShootdown
    /// One buddy-allocator allocation.
    case buddyAlloc
    /// One buddy-allocator free.
    case buddyFree
    /// One VMA operation (lookup/insert/split/merge in the VMA tree).
    case vmaOp
    /// One keyring lookup (lookup_user_key).
    case keyLookup
    /// Taking or dropping one KeyID reference (percpu_ref get/put).
    case keyidRef
    /// KSM: comparing or checksumming one page.
    case ksmCompare
    /// Reclaim: scanning one page on an LRU list.
    case lruScan

    // ---- APPEND NEW CASES BELOW THIS LINE (other layers) ----
    /// One SEAMCALL into the TDX module (entry, exit and the module's dispatch; the work it does
    /// through the cache, PCONFIG and WBINVD is charged separately).
    case seamcall
    /// One SEV firmware command through the PSP mailbox (ACTIVATE, DEACTIVATE, DF_FLUSH,
    /// DECOMMISSION, SNP_PAGE_RECLAIM, LAUNCH_UPDATE...).
    case pspCommand
    /// One RMPUPDATE or PSMASH instruction (an RMP entry written).
    case rmpUpdate
    /// One 64-byte line stored straight to DRAM (MOVDIR64B, or a non-temporal/UC store).
    case directStoreLine
    /// One cycle of a traced program's own user-mode work between its system calls, which no
    /// model layer executes (bench `macro`: the log's timestamps and the program's measured user
    /// time, times the profile's `tsc_hz`). Priced 1: the count is already in cycles.
    case programCycle
    /// SGX (KeyMMHardware/SGX.swift): ENCLS[ECREATE], the SECS page made.
    case sgxECREATE
    /// ENCLS[EADD]: one page copied into the EPC with its SECINFO.
    case sgxEADD
    /// ENCLS[EEXTEND]: 256 bytes of a page measured (16 per page with SGX_PAGE_MEASURE).
    case sgxEEXTEND
    /// ENCLS[EINIT].
    case sgxEINIT
    /// ENCLS[EPA]: a version-array page made.
    case sgxEPA
    /// ENCLS[EBLOCK]: a page blocked (no new TLB entries) before write-back.
    case sgxEBLOCK
    /// ENCLS[ETRACK]: a tracking epoch started for an enclave.
    case sgxETRACK
    /// ENCLS[EWB]: one EPC page encrypted, MAC'd and written to backing storage (an attempt that
    /// fails with SGX_NOT_TRACKED is charged too).
    case sgxEWB
    /// ENCLS[ELDU]: one page loaded back from backing storage (MAC and version checked).
    case sgxELDU
    /// ENCLS[EREMOVE]: one EPC page freed.
    case sgxEREMOVE
    /// An IPI round kicking the CPUs that may run an enclave out of it (the reclaimer's slow path).
    case sgxIPI
    /// The driver visiting one encl_mm of an enclave's mm_list (mmget_not_zero, mmap_read_lock,
    /// the VMA lookup, mmput_async): aging, blocking, cpumask and SRCU walks.
    case sgxMMWalk
    /// EENTER + EEXIT around an access from inside an enclave (enclave_read / enclave_write).
    case sgxEENTER
}

/// A quantity that is counted but costs nothing by itself.
public enum Counter: Int, CaseIterable, Sendable {
    // ---- Hardware ----
    /// A fill through KeyID B of a line that is in the cache dirty under another KeyID A (the
    /// non-coherence hazard the threads describe: B reads stale DRAM, A's write-back may clobber B).
    case incoherentFills
    /// Lines written back because they were evicted to make room (subset of write_backs).
    case evictions
    /// Dirty lines discarded without write-back (never happens on x86; kept at 0 as a check).
    case lostLines

    // ---- Kernel (pre-declared) ----
    /// A frame changed KeyID (prep_encrypted_page with a different KeyID than the frame's last).
    case keyidSwitches
    /// Pages allocated (4 KiB units).
    case pagesAllocated
    /// Pages freed (4 KiB units).
    case pagesFreed
    /// Copy-on-write breaks.
    case cowBreaks
    /// Pages migrated.
    case migratedPages

    // ---- APPEND NEW CASES BELOW THIS LINE (other layers) ----
    /// WBINVDs the key service ran before reprogramming a released KeyID (CLEAR_KEY) under the
    /// lazy allocator policies, so no line of the dead key's data survives into the next key's
    /// use of the KeyID (each is also one `wbinvd`, priced as such).
    case keyidReleaseFlushes
    /// TDX KeyIDs KVM leaked (a failed TDH.MNG.KEY.FREEID: never returned to the pool).
    case tdxKeyIDLeaks
    /// Pages leaked for good because a TDX reclaim or an SNP reclaim / RMPUPDATE failed.
    case cvmPageLeaks
    /// SEV ASID recycling rounds (WBINVD on every CPU + DF_FLUSH, then the reclaimed ASIDs are free).
    case asidRecycles
    /// Machine checks raised by reading a poisoned line.
    case machineChecks
    /// Frames the page allocator gave to PAMT (TDX module metadata) at tdx_enable.
    case pamtPages
    /// SEV guest creations that found no free ASID even after recycling (-EBUSY).
    case asidExhaustions
    /// Last-level-cache fills of a traced program's own data accesses, from real counts of the
    /// same program (bench `macro`: cachegrind's DLmr + DLmw); when its anonymous memory is
    /// encrypted each is also charged one `decrypt_line` (the engine's latency added to a fill).
    case programFills
    /// VMA merges committed (vma_merge_new_range / vma_merge_existing_range / vma_expand).
    case vmaMerges
    /// SGX: encl_mm structs allocated and freed (the mm_list entries of the two designs).
    case sgxEnclMMAllocs
    case sgxEnclMMFrees
    /// SGX: EWB attempts refused with SGX_NOT_TRACKED (each followed by ETRACK or an IPI round).
    case sgxNotTracked
    /// SGX: ELDUs the CPU refused (MAC or version mismatch: a tampered or replayed backing page).
    case sgxELDURefused
    /// SGX: blocking walks over mm_list restarted because mm_list_version changed meanwhile.
    case sgxBlockRetries
}

extension CostEvent {
    /// The event's key in a cost-profile JSON file (its price is "cycles per `name`").
    public var name: String {
        switch self {
        case .cacheAccess: "cache_access"
        case .dramFill: "dram_fill"
        case .writeBack: "write_back"
        case .encryptLine: "encrypt_line"
        case .decryptLine: "decrypt_line"
        case .clflushLine: "clflush_line"
        case .wbinvd: "wbinvd"
        case .zeroPage: "zero_page"
        case .copyPage: "copy_page"
        case .pconfig: "pconfig"
        case .syscall: "syscall"
        case .pageFault: "page_fault"
        case .ptWalk: "pt_walk"
        case .pteUpdate: "pte_update"
        case .tlbFlush: "tlb_flush"
        case .tlbShootdown: "tlb_shootdown"
        case .buddyAlloc: "buddy_alloc"
        case .buddyFree: "buddy_free"
        case .vmaOp: "vma_op"
        case .keyLookup: "key_lookup"
        case .keyidRef: "keyid_ref"
        case .ksmCompare: "ksm_compare"
        case .lruScan: "lru_scan"
        case .seamcall: "seamcall"
        case .pspCommand: "psp_command"
        case .rmpUpdate: "rmp_update"
        case .directStoreLine: "direct_store_line"
        case .programCycle: "program_cycle"
        case .sgxECREATE: "sgx_ecreate"
        case .sgxEADD: "sgx_eadd"
        case .sgxEEXTEND: "sgx_eextend"
        case .sgxEINIT: "sgx_einit"
        case .sgxEPA: "sgx_epa"
        case .sgxEBLOCK: "sgx_eblock"
        case .sgxETRACK: "sgx_etrack"
        case .sgxEWB: "sgx_ewb"
        case .sgxELDU: "sgx_eldu"
        case .sgxEREMOVE: "sgx_eremove"
        case .sgxIPI: "sgx_ipi"
        case .sgxMMWalk: "sgx_mm_walk"
        case .sgxEENTER: "sgx_eenter"
        }
    }

    /// The event's key in counter snapshots (how many times it happened).
    public var counterName: String {
        switch self {
        case .cacheAccess: "cache_accesses"
        case .dramFill: "dram_fills"
        case .writeBack: "write_backs"
        case .encryptLine: "encryptions"
        case .decryptLine: "decryptions"
        case .clflushLine: "flushed_lines"
        case .wbinvd: "wbinvds"
        case .zeroPage: "zeroed_pages"
        case .copyPage: "copied_pages"
        case .pconfig: "pconfigs"
        case .syscall: "syscalls"
        case .pageFault: "page_faults"
        case .ptWalk: "pt_walks"
        case .pteUpdate: "pte_updates"
        case .tlbFlush: "tlb_flushes"
        case .tlbShootdown: "tlb_shootdowns"
        case .buddyAlloc: "buddy_allocs"
        case .buddyFree: "buddy_frees"
        case .vmaOp: "vma_ops"
        case .keyLookup: "key_lookups"
        case .keyidRef: "keyid_refs"
        case .ksmCompare: "ksm_compares"
        case .lruScan: "lru_scans"
        case .seamcall: "seamcalls"
        case .pspCommand: "psp_commands"
        case .rmpUpdate: "rmp_updates"
        case .directStoreLine: "direct_store_lines"
        case .programCycle: "program_cycles"
        case .sgxECREATE: "sgx_ecreates"
        case .sgxEADD: "sgx_eadds"
        case .sgxEEXTEND: "sgx_eextends"
        case .sgxEINIT: "sgx_einits"
        case .sgxEPA: "sgx_epas"
        case .sgxEBLOCK: "sgx_eblocks"
        case .sgxETRACK: "sgx_etracks"
        case .sgxEWB: "sgx_ewbs"
        case .sgxELDU: "sgx_eldus"
        case .sgxEREMOVE: "sgx_eremoves"
        case .sgxIPI: "sgx_ipis"
        case .sgxMMWalk: "sgx_mm_walks"
        case .sgxEENTER: "sgx_eenters"
        }
    }

    /// Looks an event up by its profile name.
    public init?(name: String) {
        guard let e = CostEvent.allCases.first(where: { $0.name == name }) else { return nil }
        self = e
    }
}

extension Counter {
    /// The counter's key in counter snapshots.
    public var name: String {
        switch self {
        case .incoherentFills: "incoherent_fills"
        case .evictions: "evictions"
        case .lostLines: "lost_lines"
        case .keyidSwitches: "keyid_switches"
        case .pagesAllocated: "pages_allocated"
        case .pagesFreed: "pages_freed"
        case .cowBreaks: "cow_breaks"
        case .migratedPages: "migrated_pages"
        case .keyidReleaseFlushes: "keyid_release_flushes"
        case .tdxKeyIDLeaks: "tdx_keyid_leaks"
        case .cvmPageLeaks: "cvm_page_leaks"
        case .asidRecycles: "asid_recycles"
        case .machineChecks: "machine_checks"
        case .pamtPages: "pamt_pages"
        case .asidExhaustions: "asid_exhaustions"
        case .programFills: "program_fills"
        case .vmaMerges: "vma_merges"
        case .sgxEnclMMAllocs: "sgx_encl_mm_allocs"
        case .sgxEnclMMFrees: "sgx_encl_mm_frees"
        case .sgxNotTracked: "sgx_not_tracked"
        case .sgxELDURefused: "sgx_eldu_refused"
        case .sgxBlockRetries: "sgx_block_retries"
        }
    }
}
