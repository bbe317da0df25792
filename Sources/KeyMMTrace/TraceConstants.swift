// Symbolic constants of the trace language and their Linux x86-64 values.
//
// Owns: `TraceConstantFamily` (PROT_*, MAP_*, MADV_*, ...) and `TraceConstants`, the table the
// typed accessors use to turn `PROT_READ|PROT_WRITE` into 3.
// Invariants: every value equals the Linux x86-64 UAPI value (include/uapi/asm-generic/mman*.h,
// linux/keyctl.h, fcntl.h, sched.h, signal.h, mempolicy.h, capability.h, prctl.h); a name belongs
// to exactly one family.

/// A family of symbolic constants, named by its prefix.
public enum TraceConstantFamily: String, Sendable, Hashable, CaseIterable, CustomStringConvertible {
    case prot = "PROT_*", map = "MAP_*", madv = "MADV_*", mremap = "MREMAP_*", mcl = "MCL_*"
    case mlock = "MLOCK_*", keySpec = "KEY_SPEC_*", keyctl = "KEYCTL_*", open = "O_*", at = "AT_*"
    case pkey = "PKEY_*", mpol = "MPOL_*", msync = "MS_*", clone = "CLONE_*", signal = "SIG*"
    case fileMode = "S_IF*", access = "*_OK", wait = "W*", memfd = "MFD_*"
    case capability = "CAP_*", keyPerm = "KEY_POS_*", prctl = "PR_*"
    // SGX (arch/x86/include/uapi/asm/sgx.h, asm/sgx.h) and the model-only sgx_tamper modes.
    case sgxIoctl = "SGX_IOC_*", sgxSecinfo = "SGX_SECINFO_*", sgxPageFlags = "SGX_PAGE_*"
    case sgxAttribute = "SGX_ATTR_*", sgxTamper = "SGX_TAMPER_*"

    public var description: String { rawValue }

    /// The constants of this family (name, Linux x86-64 value).
    public var entries: [(String, Int64)] {
        switch self {
        case .prot:
            [("PROT_NONE", 0), ("PROT_READ", 1), ("PROT_WRITE", 2), ("PROT_EXEC", 4), ("PROT_SEM", 8),
             ("PROT_GROWSDOWN", 0x0100_0000), ("PROT_GROWSUP", 0x0200_0000)]
        case .map:
            [("MAP_FILE", 0), ("MAP_SHARED", 0x1), ("MAP_PRIVATE", 0x2), ("MAP_SHARED_VALIDATE", 0x3),
             ("MAP_TYPE", 0xf), ("MAP_DROPPABLE", 0x8), ("MAP_FIXED", 0x10), ("MAP_ANONYMOUS", 0x20),
             ("MAP_ANON", 0x20), ("MAP_32BIT", 0x40), ("MAP_GROWSDOWN", 0x100), ("MAP_DENYWRITE", 0x800),
             ("MAP_EXECUTABLE", 0x1000), ("MAP_LOCKED", 0x2000), ("MAP_NORESERVE", 0x4000),
             ("MAP_POPULATE", 0x8000), ("MAP_NONBLOCK", 0x10000), ("MAP_STACK", 0x20000),
             ("MAP_HUGETLB", 0x40000), ("MAP_SYNC", 0x80000), ("MAP_FIXED_NOREPLACE", 0x100000),
             ("MAP_UNINITIALIZED", 0x400_0000), ("MAP_HUGE_SHIFT", 26), ("MAP_HUGE_MASK", 0x3f),
             ("MAP_HUGE_64KB", 16 << 26), ("MAP_HUGE_512KB", 19 << 26), ("MAP_HUGE_1MB", 20 << 26),
             ("MAP_HUGE_2MB", 21 << 26), ("MAP_HUGE_8MB", 23 << 26), ("MAP_HUGE_16MB", 24 << 26),
             ("MAP_HUGE_32MB", 25 << 26), ("MAP_HUGE_256MB", 28 << 26), ("MAP_HUGE_512MB", 29 << 26),
             ("MAP_HUGE_1GB", 30 << 26), ("MAP_HUGE_2GB", 31 << 26), ("MAP_HUGE_16GB", 34 << 26)]
        case .madv:
            [("MADV_NORMAL", 0), ("MADV_RANDOM", 1), ("MADV_SEQUENTIAL", 2), ("MADV_WILLNEED", 3),
             ("MADV_DONTNEED", 4), ("MADV_FREE", 8), ("MADV_REMOVE", 9), ("MADV_DONTFORK", 10),
             ("MADV_DOFORK", 11), ("MADV_MERGEABLE", 12), ("MADV_UNMERGEABLE", 13), ("MADV_HUGEPAGE", 14),
             ("MADV_NOHUGEPAGE", 15), ("MADV_DONTDUMP", 16), ("MADV_DODUMP", 17), ("MADV_WIPEONFORK", 18),
             ("MADV_KEEPONFORK", 19), ("MADV_COLD", 20), ("MADV_PAGEOUT", 21), ("MADV_POPULATE_READ", 22),
             ("MADV_POPULATE_WRITE", 23), ("MADV_DONTNEED_LOCKED", 24), ("MADV_COLLAPSE", 25),
             ("MADV_HWPOISON", 100), ("MADV_SOFT_OFFLINE", 101), ("MADV_GUARD_INSTALL", 102),
             ("MADV_GUARD_REMOVE", 103)]
        case .mremap:
            [("MREMAP_MAYMOVE", 1), ("MREMAP_FIXED", 2), ("MREMAP_DONTUNMAP", 4)]
        case .mcl:
            [("MCL_CURRENT", 1), ("MCL_FUTURE", 2), ("MCL_ONFAULT", 4)]
        case .mlock:
            [("MLOCK_ONFAULT", 1)]
        case .keySpec:
            [("KEY_SPEC_THREAD_KEYRING", -1), ("KEY_SPEC_PROCESS_KEYRING", -2),
             ("KEY_SPEC_SESSION_KEYRING", -3), ("KEY_SPEC_USER_KEYRING", -4),
             ("KEY_SPEC_USER_SESSION_KEYRING", -5), ("KEY_SPEC_GROUP_KEYRING", -6),
             ("KEY_SPEC_REQKEY_AUTH_KEY", -7), ("KEY_SPEC_REQUESTOR_KEYRING", -8)]
        case .keyctl:
            [("KEYCTL_GET_KEYRING_ID", 0), ("KEYCTL_JOIN_SESSION_KEYRING", 1), ("KEYCTL_UPDATE", 2),
             ("KEYCTL_REVOKE", 3), ("KEYCTL_CHOWN", 4), ("KEYCTL_SETPERM", 5), ("KEYCTL_DESCRIBE", 6),
             ("KEYCTL_CLEAR", 7), ("KEYCTL_LINK", 8), ("KEYCTL_UNLINK", 9), ("KEYCTL_SEARCH", 10),
             ("KEYCTL_READ", 11), ("KEYCTL_INSTANTIATE", 12), ("KEYCTL_NEGATE", 13),
             ("KEYCTL_SET_REQKEY_KEYRING", 14), ("KEYCTL_SET_TIMEOUT", 15), ("KEYCTL_ASSUME_AUTHORITY", 16),
             ("KEYCTL_GET_SECURITY", 17), ("KEYCTL_SESSION_TO_PARENT", 18), ("KEYCTL_REJECT", 19),
             ("KEYCTL_INSTANTIATE_IOV", 20), ("KEYCTL_INVALIDATE", 21), ("KEYCTL_GET_PERSISTENT", 22),
             ("KEYCTL_DH_COMPUTE", 23), ("KEYCTL_PKEY_QUERY", 24), ("KEYCTL_PKEY_ENCRYPT", 25),
             ("KEYCTL_PKEY_DECRYPT", 26), ("KEYCTL_PKEY_SIGN", 27), ("KEYCTL_PKEY_VERIFY", 28),
             ("KEYCTL_RESTRICT_KEYRING", 29), ("KEYCTL_MOVE", 30), ("KEYCTL_CAPABILITIES", 31),
             ("KEYCTL_WATCH_KEY", 32)]
        case .open:
            [("O_RDONLY", 0), ("O_WRONLY", 0o1), ("O_RDWR", 0o2), ("O_ACCMODE", 0o3), ("O_CREAT", 0o100),
             ("O_EXCL", 0o200), ("O_NOCTTY", 0o400), ("O_TRUNC", 0o1000), ("O_APPEND", 0o2000),
             ("O_NONBLOCK", 0o4000), ("O_NDELAY", 0o4000), ("O_DSYNC", 0o10000), ("O_ASYNC", 0o20000),
             ("O_DIRECT", 0o40000), ("O_LARGEFILE", 0o100000), ("O_DIRECTORY", 0o200000),
             ("O_NOFOLLOW", 0o400000), ("O_NOATIME", 0o1000000), ("O_CLOEXEC", 0o2000000),
             ("O_SYNC", 0o4010000), ("O_RSYNC", 0o4010000), ("O_PATH", 0o10000000),
             ("O_TMPFILE", 0o20200000)]
        case .at:
            [("AT_FDCWD", -100), ("AT_SYMLINK_NOFOLLOW", 0x100), ("AT_REMOVEDIR", 0x200),
             ("AT_EACCESS", 0x200), ("AT_SYMLINK_FOLLOW", 0x400), ("AT_NO_AUTOMOUNT", 0x800),
             ("AT_EMPTY_PATH", 0x1000), ("AT_STATX_SYNC_AS_STAT", 0), ("AT_STATX_FORCE_SYNC", 0x2000),
             ("AT_STATX_DONT_SYNC", 0x4000), ("AT_RECURSIVE", 0x8000)]
        case .pkey:
            [("PKEY_DISABLE_ACCESS", 1), ("PKEY_DISABLE_WRITE", 2)]
        case .mpol:
            [("MPOL_DEFAULT", 0), ("MPOL_PREFERRED", 1), ("MPOL_BIND", 2), ("MPOL_INTERLEAVE", 3),
             ("MPOL_LOCAL", 4), ("MPOL_PREFERRED_MANY", 5), ("MPOL_WEIGHTED_INTERLEAVE", 6),
             ("MPOL_F_STATIC_NODES", 1 << 15), ("MPOL_F_RELATIVE_NODES", 1 << 14),
             ("MPOL_F_NUMA_BALANCING", 1 << 13), ("MPOL_F_NODE", 1), ("MPOL_F_ADDR", 2),
             ("MPOL_F_MEMS_ALLOWED", 4), ("MPOL_MF_STRICT", 1), ("MPOL_MF_MOVE", 2),
             ("MPOL_MF_MOVE_ALL", 4), ("MPOL_MF_LAZY", 8)]
        case .msync:
            [("MS_ASYNC", 1), ("MS_INVALIDATE", 2), ("MS_SYNC", 4)]
        case .clone:
            [("CLONE_NEWTIME", 0x80), ("CLONE_VM", 0x100), ("CLONE_FS", 0x200), ("CLONE_FILES", 0x400),
             ("CLONE_SIGHAND", 0x800), ("CLONE_PIDFD", 0x1000), ("CLONE_PTRACE", 0x2000),
             ("CLONE_VFORK", 0x4000), ("CLONE_PARENT", 0x8000), ("CLONE_THREAD", 0x10000),
             ("CLONE_NEWNS", 0x20000), ("CLONE_SYSVSEM", 0x40000), ("CLONE_SETTLS", 0x80000),
             ("CLONE_PARENT_SETTID", 0x100000), ("CLONE_CHILD_CLEARTID", 0x200000),
             ("CLONE_DETACHED", 0x400000), ("CLONE_UNTRACED", 0x800000), ("CLONE_CHILD_SETTID", 0x100_0000),
             ("CLONE_NEWCGROUP", 0x200_0000), ("CLONE_NEWUTS", 0x400_0000), ("CLONE_NEWIPC", 0x800_0000),
             ("CLONE_NEWUSER", 0x1000_0000), ("CLONE_NEWPID", 0x2000_0000), ("CLONE_NEWNET", 0x4000_0000),
             ("CLONE_IO", 0x8000_0000), ("CLONE_CLEAR_SIGHAND", 0x1_0000_0000),
             ("CLONE_INTO_CGROUP", 0x2_0000_0000)]
        case .signal:
            [("SIGHUP", 1), ("SIGINT", 2), ("SIGQUIT", 3), ("SIGILL", 4), ("SIGTRAP", 5), ("SIGABRT", 6),
             ("SIGIOT", 6), ("SIGBUS", 7), ("SIGFPE", 8), ("SIGKILL", 9), ("SIGUSR1", 10), ("SIGSEGV", 11),
             ("SIGUSR2", 12), ("SIGPIPE", 13), ("SIGALRM", 14), ("SIGTERM", 15), ("SIGSTKFLT", 16),
             ("SIGCHLD", 17), ("SIGCONT", 18), ("SIGSTOP", 19), ("SIGTSTP", 20), ("SIGTTIN", 21),
             ("SIGTTOU", 22), ("SIGURG", 23), ("SIGXCPU", 24), ("SIGXFSZ", 25), ("SIGVTALRM", 26),
             ("SIGPROF", 27), ("SIGWINCH", 28), ("SIGIO", 29), ("SIGPOLL", 29), ("SIGPWR", 30),
             ("SIGSYS", 31), ("SIGRTMIN", 32), ("SIGRTMAX", 64),
             ("SIG_DFL", 0), ("SIG_IGN", 1), ("SIG_BLOCK", 0), ("SIG_UNBLOCK", 1), ("SIG_SETMASK", 2)]
                + (1...31).map { ("SIGRT_\($0)", Int64(32 + $0)) }
        case .fileMode:
            [("S_IFMT", 0o170000), ("S_IFSOCK", 0o140000), ("S_IFLNK", 0o120000), ("S_IFREG", 0o100000),
             ("S_IFBLK", 0o60000), ("S_IFDIR", 0o40000), ("S_IFCHR", 0o20000), ("S_IFIFO", 0o10000),
             ("S_ISUID", 0o4000), ("S_ISGID", 0o2000), ("S_ISVTX", 0o1000)]
        case .access:
            [("F_OK", 0), ("X_OK", 1), ("W_OK", 2), ("R_OK", 4)]
        case .wait:
            [("WNOHANG", 1), ("WUNTRACED", 2), ("WSTOPPED", 2), ("WEXITED", 4), ("WCONTINUED", 8),
             ("WNOWAIT", 0x0100_0000), ("__WNOTHREAD", 0x2000_0000), ("__WALL", 0x4000_0000),
             ("__WCLONE", 0x8000_0000)]
        case .sgxIoctl:
            [("SGX_IOC_ENCLAVE_CREATE", 0x4008_A400), ("SGX_IOC_ENCLAVE_ADD_PAGES", 0xC030_A401),
             ("SGX_IOC_ENCLAVE_INIT", 0x4008_A402), ("SGX_IOC_ENCLAVE_PROVISION", 0x4008_A403),
             ("SGX_IOC_VEPC_REMOVE_ALL", 0xA404), ("SGX_IOC_ENCLAVE_RESTRICT_PERMISSIONS", 0xC028_A405),
             ("SGX_IOC_ENCLAVE_MODIFY_TYPES", 0xC028_A406), ("SGX_IOC_ENCLAVE_REMOVE_PAGES", 0xC018_A407)]
        case .sgxSecinfo:
            [("SGX_SECINFO_R", 0x1), ("SGX_SECINFO_W", 0x2), ("SGX_SECINFO_X", 0x4),
             ("SGX_SECINFO_SECS", 0x000), ("SGX_SECINFO_TCS", 0x100), ("SGX_SECINFO_REG", 0x200),
             ("SGX_SECINFO_VA", 0x300), ("SGX_SECINFO_TRIM", 0x400)]
        case .sgxPageFlags:
            [("SGX_PAGE_MEASURE", 0x1)]
        case .sgxAttribute:
            [("SGX_ATTR_INIT", 0x1), ("SGX_ATTR_DEBUG", 0x2), ("SGX_ATTR_MODE64BIT", 0x4),
             ("SGX_ATTR_PROVISIONKEY", 0x10), ("SGX_ATTR_EINITTOKENKEY", 0x20), ("SGX_ATTR_KSS", 0x80),
             ("SGX_ATTR_ASYNC_EXIT_NOTIFY", 0x400)]
        case .sgxTamper:
            [("SGX_TAMPER_FLIP", 1), ("SGX_TAMPER_REPLAY", 2)]
        case .memfd:
            [("MFD_CLOEXEC", 1), ("MFD_ALLOW_SEALING", 2), ("MFD_HUGETLB", 4), ("MFD_NOEXEC_SEAL", 8),
             ("MFD_EXEC", 0x10)]
        case .capability:
            [("CAP_CHOWN", 0), ("CAP_DAC_OVERRIDE", 1), ("CAP_DAC_READ_SEARCH", 2), ("CAP_FOWNER", 3),
             ("CAP_FSETID", 4), ("CAP_KILL", 5), ("CAP_SETGID", 6), ("CAP_SETUID", 7), ("CAP_SETPCAP", 8),
             ("CAP_LINUX_IMMUTABLE", 9), ("CAP_NET_BIND_SERVICE", 10), ("CAP_NET_BROADCAST", 11),
             ("CAP_NET_ADMIN", 12), ("CAP_NET_RAW", 13), ("CAP_IPC_LOCK", 14), ("CAP_IPC_OWNER", 15),
             ("CAP_SYS_MODULE", 16), ("CAP_SYS_RAWIO", 17), ("CAP_SYS_CHROOT", 18), ("CAP_SYS_PTRACE", 19),
             ("CAP_SYS_PACCT", 20), ("CAP_SYS_ADMIN", 21), ("CAP_SYS_BOOT", 22), ("CAP_SYS_NICE", 23),
             ("CAP_SYS_RESOURCE", 24), ("CAP_SYS_TIME", 25), ("CAP_SYS_TTY_CONFIG", 26), ("CAP_MKNOD", 27),
             ("CAP_LEASE", 28), ("CAP_AUDIT_WRITE", 29), ("CAP_AUDIT_CONTROL", 30), ("CAP_SETFCAP", 31),
             ("CAP_MAC_OVERRIDE", 32), ("CAP_MAC_ADMIN", 33), ("CAP_SYSLOG", 34), ("CAP_WAKE_ALARM", 35),
             ("CAP_BLOCK_SUSPEND", 36), ("CAP_AUDIT_READ", 37), ("CAP_PERFMON", 38), ("CAP_BPF", 39),
             ("CAP_CHECKPOINT_RESTORE", 40), ("_LINUX_CAPABILITY_VERSION_1", 0x1998_0330),
             ("_LINUX_CAPABILITY_VERSION_2", 0x2007_1026), ("_LINUX_CAPABILITY_VERSION_3", 0x2008_0522)]
        case .keyPerm:
            [("KEY_POS_VIEW", 0x1000000), ("KEY_POS_READ", 0x2000000), ("KEY_POS_WRITE", 0x4000000),
             ("KEY_POS_SEARCH", 0x8000000), ("KEY_POS_LINK", 0x10000000), ("KEY_POS_SETATTR", 0x20000000),
             ("KEY_POS_ALL", 0x3f000000), ("KEY_USR_VIEW", 0x10000), ("KEY_USR_READ", 0x20000),
             ("KEY_USR_WRITE", 0x40000), ("KEY_USR_SEARCH", 0x80000), ("KEY_USR_LINK", 0x100000),
             ("KEY_USR_SETATTR", 0x200000), ("KEY_USR_ALL", 0x3f0000), ("KEY_GRP_VIEW", 0x100),
             ("KEY_GRP_READ", 0x200), ("KEY_GRP_WRITE", 0x400), ("KEY_GRP_SEARCH", 0x800),
             ("KEY_GRP_LINK", 0x1000), ("KEY_GRP_SETATTR", 0x2000), ("KEY_GRP_ALL", 0x3f00),
             ("KEY_OTH_VIEW", 0x1), ("KEY_OTH_READ", 0x2), ("KEY_OTH_WRITE", 0x4), ("KEY_OTH_SEARCH", 0x8),
             ("KEY_OTH_LINK", 0x10), ("KEY_OTH_SETATTR", 0x20), ("KEY_OTH_ALL", 0x3f)]
        case .prctl:
            [("PR_SET_PDEATHSIG", 1), ("PR_GET_PDEATHSIG", 2), ("PR_GET_DUMPABLE", 3), ("PR_SET_DUMPABLE", 4),
             ("PR_GET_KEEPCAPS", 7), ("PR_SET_KEEPCAPS", 8), ("PR_SET_NAME", 15), ("PR_GET_NAME", 16),
             ("PR_CAPBSET_READ", 23), ("PR_CAPBSET_DROP", 24), ("PR_GET_SECUREBITS", 27),
             ("PR_SET_SECUREBITS", 28), ("PR_SET_NO_NEW_PRIVS", 38), ("PR_GET_NO_NEW_PRIVS", 39),
             ("PR_CAP_AMBIENT", 47), ("PR_CAP_AMBIENT_IS_SET", 1), ("PR_CAP_AMBIENT_RAISE", 2),
             ("PR_CAP_AMBIENT_LOWER", 3), ("PR_CAP_AMBIENT_CLEAR_ALL", 4), ("PR_SET_VMA", 0x5356_4d41),
             ("PR_SET_VMA_ANON_NAME", 0)]
        }
    }
}

/// The symbolic-constant table: name -> (value, family).
///
/// `TraceConstants.linux` holds every family of `TraceConstantFamily` with Linux x86-64 values;
/// `adding(_:_:family:)` extends it (e.g. for tests or another architecture).
public struct TraceConstants: Sendable {
    /// One constant: its value and its family.
    public struct Entry: Sendable, Hashable {
        public let value: Int64
        public let family: TraceConstantFamily
    }

    private var table: [String: Entry]

    /// The Linux x86-64 table.
    public static let linux = TraceConstants()

    public init() {
        var t: [String: Entry] = [:]
        for family in TraceConstantFamily.allCases {
            for (name, value) in family.entries { t[name] = Entry(value: value, family: family) }
        }
        table = t
    }

    /// A copy with one more constant.
    public func adding(_ name: String, _ value: Int64, family: TraceConstantFamily) -> TraceConstants {
        var copy = self
        copy.table[name] = Entry(value: value, family: family)
        return copy
    }

    /// The entry for a name, if known.
    public func entry(_ name: String) -> Entry? { table[name] }

    /// The value of a name, if known.
    public func value(_ name: String) -> Int64? { table[name]?.value }

    /// Every known name (unordered).
    public var names: Dictionary<String, Entry>.Keys { table.keys }

    /// The known name closest to `name` (edit distance <= 3), for "did you mean" hints.
    public func suggestion(for name: String, in families: [TraceConstantFamily] = []) -> String? {
        let target = Array(name.utf8)
        var best: (String, Int)?
        for (candidate, entry) in table {
            if !families.isEmpty && !families.contains(entry.family) { continue }
            let c = Array(candidate.utf8)
            if abs(c.count - target.count) > 3 { continue }
            let d = editDistance(target, c)
            if d <= 3, best == nil || d < best!.1 || (d == best!.1 && candidate < best!.0) {
                best = (candidate, d)
            }
        }
        return best?.0
    }
}

/// Levenshtein distance of two byte strings (small inputs only: identifiers).
func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
    if a.isEmpty { return b.count }
    if b.isEmpty { return a.count }
    var prev = Array(0...b.count)
    var cur = [Int](repeating: 0, count: b.count + 1)
    for i in 1...a.count {
        cur[0] = i
        for j in 1...b.count {
            let cost = a[i - 1] == b[j - 1] ? 0 : 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
        }
        swap(&prev, &cur)
    }
    return prev[b.count]
}
