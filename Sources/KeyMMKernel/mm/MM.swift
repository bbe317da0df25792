// mm_struct and task_struct: one address space (its VMA tree, page table, layout, pkey
// allocation map, accounting counters) and the task that runs in it.
//
// Invariants: `mapCount == vmas.count`; pkey 0 is always set in `pkeyAllocationMap`;
// the VMA ranges in `vmas` never overlap; `totalVM` / `lockedVM` are in pages and equal
// the sums over the VMAs (vm_stat_account / mlock accounting); a VMA's range changes
// only through `adjust` while it is in the tree. These fields are `internal(set)`: only the
// kernel's own paths change them.
import KeyMMBase

/// struct mm_struct.
public final class MM {
    /// The VMA tree (mm_mt).
    public let vmas = VMATree()
    /// The process's page tables (pgd).
    public let pageTable: PageTable
    /// Bit n set = pkey n allocated (mm->context.pkey_allocation_map). Bit 0 always set.
    public internal(set) var pkeyAllocationMap: UInt16 = 1
    /// mm->context.execute_only_pkey (-1: none yet). Without OSPKE the context is zeroed (0).
    public internal(set) var executeOnlyPkey: Int = -1
    /// Start of the heap (mm->start_brk) and the current break (mm->brk).
    public internal(set) var startBrk: VirtAddr = MM.defaultStartBrk
    public internal(set) var brk: VirtAddr = MM.defaultStartBrk
    /// Where top-down mmap placement starts (mm->mmap_base).
    public var mmapBase: VirtAddr
    /// Highest address usable by mmap (TASK_SIZE).
    public var taskSize: VirtAddr = VirtAddr(userAddressLimit)
    /// mm->start_stack: the VMA containing it is shown as [stack].
    public var startStack: VirtAddr = VirtAddr(0)
    /// Pages locked (VM_LOCKED VMAs), pages mapped, and the other vm_stat_account buckets.
    public internal(set) var lockedVM: UInt64 = 0
    public internal(set) var totalVM: UInt64 = 0
    public internal(set) var dataVM: UInt64 = 0
    public internal(set) var execVM: UInt64 = 0
    public internal(set) var stackVM: UInt64 = 0
    /// Pages pinned (FOLL_PIN / gup_pin).
    public internal(set) var pinnedVM: UInt64 = 0
    /// mm->def_flags: VM_LOCKED|VM_LOCKONFAULT after mlockall(MCL_FUTURE[|MCL_ONFAULT]).
    public internal(set) var defFlags: VMFlags = []
    /// mm_users: the tasks running in this mm (the creator, plus every CLONE_VM child: threads,
    /// vfork/posix_spawn children). mm/MMLifetime.swift: mmget/mmput; the last mmput runs exit_mmap.
    public internal(set) var users: Int = 1
    /// Set by exit_mmap (it runs once, when `users` reaches 0): the address space is gone
    /// (walkers' mmget_not_zero fails).
    public internal(set) var tornDown = false
    /// mmu_notifier subscriptions (mm->notifier_subscriptions, mm/MMUNotifier.swift): their
    /// `.release` runs at the start of exit_mmap.
    package var mmuNotifiers: [MMUNotifier] = []
    /// Accounted pages (vm_committed_as share of this mm: VM_ACCOUNT VMAs).
    public internal(set) var committedPages: UInt64 = 0

    /// Default mmap_base without randomization: TASK_SIZE minus the minimum stack gap
    /// (x86 mmap_base(): max(8 MiB stack rlimit + 1 MiB guard, 128 MiB) = 128 MiB).
    public static let defaultMmapBase = VirtAddr(userAddressLimit - (128 << 20))
    /// Default start of the heap (mm->start_brk) for a process the model starts.
    public static let defaultStartBrk = VirtAddr(0x5555_5555_9000)

    public init(pageTable: PageTable) {
        self.pageTable = pageTable
        self.mmapBase = MM.defaultMmapBase
    }

    /// map_count.
    @inlinable public var mapCount: Int { vmas.count }

    /// find_vma(): the first VMA with vm_end > addr.
    @inlinable public func findVMA(_ addr: VirtAddr) -> VMA? { vmas.findVMA(addr) }
    /// vma_lookup(): the VMA containing addr.
    @inlinable public func vma(containing addr: VirtAddr) -> VMA? { vmas.lookup(addr) }
    /// find_vma_prev().
    @inlinable public func findVMAPrev(_ addr: VirtAddr) -> (vma: VMA?, prev: VMA?) { vmas.findVMAPrev(addr) }
    /// vma_prev / vma_next.
    @inlinable public func prev(of vma: VMA) -> VMA? { vmas.prev(of: vma) }
    @inlinable public func next(of vma: VMA) -> VMA? { vmas.next(of: vma) }

    /// Changes a VMA's range (and pgoff) keeping the tree consistent (vma_set_range).
    public func adjust(_ vma: VMA, start: VirtAddr, end: VirtAddr, pgoff: UInt64) {
        if start != vma.vmStart {
            vmas.remove(vma)
            vma.vmStart = start
            vma.vmEnd = end
            vma.vmPgoff = pgoff
            vmas.insert(vma)
        } else {
            vma.vmEnd = end
            vma.vmPgoff = pgoff
        }
    }

    /// Every VMA in address order.
    public var allVMAs: [VMA] { Array(vmas) }
}

/// The task's open files (struct files_struct, reduced to an fd table).
public final class FileTable {
    public struct OpenFile {
        public let file: MappedFile
        /// O_ACCMODE bits: 0 O_RDONLY, 1 O_WRONLY, 2 O_RDWR.
        public let accessMode: Int32
        /// The open file description's identity (struct file *): VMAs mapped through
        /// different opens of one inode have different vm_file and never merge.
        public var openID: UInt64 = 0
        public var readable: Bool { accessMode == 0 || accessMode == 2 }
        public var writable: Bool { accessMode == 1 || accessMode == 2 }
    }
    public var fds: [Int32: OpenFile] = [:]
    public init() {}
    /// The lowest free descriptor (fds 0, 1, 2 are taken by stdio).
    func lowestFree() -> Int32 {
        var fd: Int32 = 3
        while fds[fd] != nil { fd += 1 }
        return fd
    }
    func copy() -> FileTable {
        let t = FileTable()
        t.fds = fds
        return t
    }
}

/// struct task_struct: one thread. Threads of one process (CLONE_THREAD) share `tgid`, the
/// address space and (with CLONE_FILES) the fd table.
public final class TaskStruct {
    /// The thread's id (a single-threaded process's pid). A non-leader thread that execs takes
    /// its group leader's id (de_thread).
    public internal(set) var pid: ProcessID
    /// The thread group's id (getpid()): the pid of the group's first thread, the leader.
    public internal(set) var tgid: ProcessID
    /// The address space: shared with the parent after clone(CLONE_VM) (threads, vfork,
    /// posix_spawn), a copy after fork, a fresh one after execve.
    public internal(set) var mm: MM
    public var cred: Credentials
    /// Per-thread PKRU register: 2 bits per pkey (AD = bit 2n, WD = bit 2n+1).
    public var pkru: UInt32
    public var files: FileTable
    public var parent: ProcessID?
    /// Set by exit/exit_group; the task is then removed from `Kernel.tasks`.
    public var exitCode: Int32?
    /// RLIMIT_MEMLOCK in bytes (default 8 MiB; root has CAP_IPC_LOCK).
    public var rlimitMemlock: UInt64 = 8 << 20

    public init(pid: ProcessID, mm: MM, cred: Credentials, pkru: UInt32 = 0x5555_5554,
                files: FileTable = FileTable(), parent: ProcessID? = nil) {
        self.pid = pid
        self.tgid = pid
        self.mm = mm
        self.cred = cred
        self.pkru = pkru
        self.files = files
        self.parent = parent
    }
}
