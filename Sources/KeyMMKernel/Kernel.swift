// KeyMMKernel: the Linux mm with MKTME. See docs/architecture.md and docs/vm-core.md.
//
// This file owns `Kernel` (the machine-wide kernel state: tasks, the model's file system,
// the configuration) and the small value types every syscall uses (ProcessID,
// KernelConfig, THPMode).
//
// Invariants: every task in `tasks` has a live mm; pids are handed out in increasing order
// (deterministic); inode numbers are handed out in creation order (deterministic).
import KeyMMBase
import KeyMMHardware
import KeyMMKeys

/// A task id: a thread's tid, which is its process's pid for the thread group's leader
/// (TaskStruct.tgid is the process id every thread of the group shares).
public struct ProcessID: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    @inlinable public init(rawValue: Int32) { self.rawValue = rawValue }
    @inlinable public init(_ raw: Int32) { self.rawValue = raw }
    @inlinable public static func < (a: ProcessID, b: ProcessID) -> Bool { a.rawValue < b.rawValue }
    public var description: String { String(rawValue) }
}

/// /sys/kernel/mm/transparent_hugepage/enabled.
public enum THPMode: String, Sendable, CaseIterable {
    case always, madvise, never
}

/// The kernel's boot/sysctl configuration as the model uses it.
public struct KernelConfig: Sendable {
    /// The page allocator's MKTME flush policy.
    public var policy: AllocatorPolicy = .integrated
    /// Transparent huge pages for anonymous memory.
    public var thp: THPMode = .madvise
    /// vm.max_map_count (default USHRT_MAX - 5).
    public var maxMapCount: Int = 65530
    /// Whether the `user` key type is available to encrypt_mprotect.
    public var userKeys: Bool = true
    /// Seeded bugs the fuzzer's self-test switches on (KeyMMChecker/SeededBugs.swift names them).
    public var bugs: InjectedBugs = []
    /// arch_max_pkey(): 16 on x86 with PKU (OSPKE), 1 without (only pkey 0 exists).
    public var pkeyCount: Int = 16
    /// vm.overcommit_memory == 2 (OVERCOMMIT_NEVER): MAP_NORESERVE is then ignored.
    public var overcommitNever: Bool = false
    /// THP's use_zero_page (read faults on huge-eligible ranges map the huge zero page).
    public var thpUseZeroPage: Bool = true
    /// vm.mmap_min_addr (the kernel default is 65536; many distributions use 4096).
    public var mmapMinAddr: UInt64 = 65536
    /// CONFIG_MEM_SOFT_DIRTY: new VMAs get VM_SOFTDIRTY and smaps shows "sd".
    public var softDirty: Bool = false
    /// Pages the overcommit heuristic allows one accountable mapping (0: the machine's RAM).
    public var overcommitPages: UInt64 = 0
    /// The MKTME series' kernel-build experiment (bench `macro`, `--set encrypt-anon=on`): at boot
    /// the kernel adds one "mktme" type=cpu key and every new anonymous private mapping (mmap, brk)
    /// gets its KeyID. No effect when MKTME is off (policy `none`). See mktme/EncryptAnon.swift.
    public var encryptAnon: Bool = false
    /// The confidential-VM host paths (cvm/): KVM's SEV ASID recycling policy.
    package var cvm = CVMConfig()
    /// How the SGX driver tracks the mms that map an enclave (seed 004): the merged driver's
    /// mmu_notifier + SRCU-protected mm_list, or the 2019 RFC's per-VMA refcounting (vm_ops
    /// open/close). See sgx/EnclaveMMList.swift and docs/sgx.md.
    public var sgxMMTracking: SGXMMTracking = .notifier
    /// Whether enclave VMAs get VM_PFNMAP|VM_DONTEXPAND|VM_DONTDUMP|VM_IO (as merged) or no extra
    /// flags (a counterfactual driver whose VMAs VM_SPECIAL does not keep from merging).
    public var sgxVMAFlags: SGXVMAFlags = .special
    /// Which kernel's rule keeps VMAs with a vm_ops->close hook from merging: 6.18's (such a VMA is
    /// never *removed* by a merge, it can still be expanded) or 2019's (is_mergeable_vma refuses it
    /// outright, the rule seed 004 quotes).
    public var closeMergeRule: CloseMergeRule = .linux618
    public init() {}
}

/// `sgx-mm-tracking`: the two designs of seed 004.
public enum SGXMMTracking: String, Sendable, CaseIterable {
    case notifier
    case vmaRefcount = "vma-refcount"
}

/// `sgx-vma-flags`.
public enum SGXVMAFlags: String, Sendable, CaseIterable {
    case special, plain
}

/// `vm-close-merge`.
public enum CloseMergeRule: String, Sendable, CaseIterable {
    case linux618 = "6.18"
    case linux2019 = "2019"
}

/// The kernel: tasks and their address spaces on one modeled machine.
public final class Kernel {
    deinit {
        sgx?.breakReferenceCycles()   // sgx/SGXDriver.swift: encl_mm <-> mmu_notifier <-> mm, pending SRCU work
    }
    public let machine: Machine
    package let allocator: PageAllocator
    package let keys: KeyService
    public let config: KernelConfig
    /// Where the physical address and the KeyID sit in page-table entries.
    package let layout: PTELayout
    /// Every live task, by pid.
    public var tasks: [ProcessID: TaskStruct] = [:] { didSet { taskSetVersion &+= 1 } }
    /// Bumped whenever a task comes or goes or a task's mm is replaced (exec): observers that
    /// mirror the set of mms (the checker's shadow) look again only when it moved.
    package internal(set) var taskSetVersion: UInt64 = 0
    /// The page cache of every file of the model's file system.
    package let pageCache: PageCache
    /// Kernel-wide page-table layer state (zero pages, THP and migration statistics).
    package let pgtable = PgtableState()
    /// Kernel-wide MKTME state: boot decision and direct-map layout, pins, swap, KSM (mktme/).
    package let mktme: MKTMEState
    /// The KeyID every new anonymous private VMA gets (KeyID 0 unless `KernelConfig.encryptAnon`).
    package internal(set) var encryptAnonKeyID: KeyID = .tme
    /// TDX and SEV hosts: TDs, SEV guests, KeyID/ASID pools, direct-map holes (cvm/).
    package let cvm: ConfidentialVMs

    /// The model's file system: path -> inode.
    package internal(set) var filesystem: [String: MappedFile] = [:]
    @usableFromInline var nextPid: Int32 = 1
    @usableFromInline var nextInode: UInt64 = 1000
    @usableFromInline var nextAnonVMAId: UInt64 = 1
    /// Inode counter of the internal shmem mount (shared anonymous memory).
    @usableFromInline var nextShmemInode: UInt64 = 1
    /// Numbers open file descriptions (struct file identity: merging compares vm_file).
    var nextOpenID: UInt64 = 1
    /// Open descriptions of device nodes and their references (mm/CharDevice.swift).
    package internal(set) var openDevices: [UInt64: OpenDevice] = [:]
    /// The SRCU of mmu notifiers (mm/MMUNotifier.swift): frees of put subscriptions wait for it.
    package let mmuNotifierSRCU = SRCUStruct()
    /// The SGX driver (/dev/sgx_enclave, the EPC allocator, ksgxd), when the machine has an EPC.
    package internal(set) var sgx: SGXDriver?

    /// Builds a kernel on `machine`.
    public init(machine: Machine, config: KernelConfig) throws {
        self.machine = machine
        self.config = config
        let mc = machine.config
        let keyBits = mc.effectiveKeyIDBits
        if mc.encryption == .sme {
            self.layout = PTELayout(physBits: mc.physBits, keyidBits: 0, smeCBit: mc.physBits - 1)
        } else {
            self.layout = PTELayout(physBits: mc.physBits, keyidBits: keyBits)
        }
        // mktme/DirectMap.swift: MKTME is disabled at boot when the per-KeyID direct mappings do
        // not fit, and by policy=none (MKTME off); then the "mktme" key type is not registered.
        let boot = DirectMapLayout(machine: mc, forceDisabled: config.policy == .none ? "policy=none: MKTME off" : nil)
        self.mktme = MKTMEState(directMap: boot)
        self.keys = KeyService(programmer: machine.keyTable, keyids: boot.mktmeEnabled ? mc.mktmeKeyIDs : nil,
                               userKeysEnabled: config.userKeys, seed: mc.seed)
        // SME has no KeyIDs to count: its C-bit pages take no KeyID references.
        self.allocator = PageAllocator(machine: machine, policy: config.policy,
                                       keyidRefs: mc.encryption == .sme ? nil : keys.references, bugs: config.bugs)
        self.pageCache = PageCache()
        self.cvm = ConfidentialVMs(machine: mc, config: config.cvm)
        installMigrationCallback()   // pgtable: compaction/migration remap mapped pages
        setupEncryptAnon()   // mktme/EncryptAnon.swift: KernelConfig.encryptAnon
        installKeyIDReleaseFlush()   // mktme/KeyIDRelease.swift: WBINVD before CLEAR_KEY (lazy policies)
        sgxInit()                    // sgx/SGXDriver.swift: EPC sections, ksgxd, /dev/sgx_enclave
    }

    /// Creates a process with an empty address space. `pid` nil picks the next free pid.
    @discardableResult
    public func spawn(pid: ProcessID? = nil, cred: Credentials = .root) -> TaskStruct {
        let id = pid ?? allocatePid()
        if id.rawValue >= nextPid { nextPid = id.rawValue &+ 1 }
        let task = TaskStruct(pid: id, mm: makeMM(), cred: cred)
        tasks[id] = task
        return task
    }

    /// The next unused pid.
    func allocatePid() -> ProcessID {
        while tasks[ProcessID(nextPid)] != nil { nextPid &+= 1 }
        let p = ProcessID(nextPid)
        nextPid &+= 1
        return p
    }

    /// A fresh mm_struct (mm_init): empty tree, pkey 0 allocated, default layout.
    func makeMM() -> MM {
        let mm = MM(pageTable: PageTable(layout: layout))
        if let log = machine.touchLog { mm.attachTouchLog(log) }
        if !pkeysEnabled {
            // init_new_context() only sets up the pkey map with OSPKE; the zeroed context
            // makes pkey 0 look like the execute-only key.
            mm.pkeyAllocationMap = 0
            mm.executeOnlyPkey = 0
        }
        return mm
    }

    /// arch_pkeys_enabled() / OSPKE: more than one protection key exists.
    @inlinable package var pkeysEnabled: Bool { config.pkeyCount > 1 }

    /// The task with `pid`, or ESRCH.
    public func task(_ pid: ProcessID) -> TaskStruct? { tasks[pid] }

    /// Every distinct mm (vfork/CLONE_VM tasks share one) with the lowest pid using it, in pid
    /// order: what the kernel-wide scans (rmap fallback, KSM, khugepaged, reclaim, NUMA
    /// balancing) and the checker visit.
    package var distinctMMs: [(pid: ProcessID, mm: MM)] {
        var seen = Set<ObjectIdentifier>()
        var out: [(pid: ProcessID, mm: MM)] = []
        for pid in tasks.keys.sorted() {
            guard let t = tasks[pid], seen.insert(ObjectIdentifier(t.mm)).inserted else { continue }
            out.append((pid, t.mm))
        }
        return out
    }

    /// Starts (nil: stops) recording what calls touch — frames, page-table entries, VMAs, CPU
    /// accesses, page references — in `log` (KeyMMHardware/TouchLog.swift; the invariant checker's
    /// incremental checks read it). Every mm made later records into it too.
    package func attachTouchLog(_ log: TouchLog?) {
        machine.touchLog = log
        allocator.attachTouchLog(log)
        pageCache.touchLog = log
        mktme.touchLog = log
        for t in tasks.values { t.mm.attachTouchLog(log) }
    }

    func newAnonVMA(parent: AnonVMA?) -> AnonVMA {
        let a = AnonVMA(id: nextAnonVMAId, parent: parent)
        nextAnonVMAId &+= 1
        return a
    }
}
