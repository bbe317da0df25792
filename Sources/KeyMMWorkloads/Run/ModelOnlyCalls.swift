// The calls beyond the mm syscalls: the key service (add_key, keyctl), files
// (file_create, openat, close, fstat, memfd_create, ftruncate, truncate), and the contract's model-only calls (mem_*,
// virt_to_phys, phys_read, wbinvd, clflush, gup_*, kernel-thread passes).
//
// Invariant: ids a trace recorded (key serials, fds, pin handles) are the ids the model
// assigns when they are free; when they are not, the model's own id is the outcome and
// the comparison reports the divergence.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMKeys
import KeyMMTrace

extension SyscallDispatcher {
    mutating func executeMore(_ call: ModeledCall, a: inout Arguments, line: SyscallLine,
                              task: TaskStruct, kernel: Kernel, lenient: Bool) throws(TraceError) -> CallOutcome? {
        let pid = task.pid
        switch call {
        case .add_key:
            let type = try a.string(0)
            let desc: String? = (try? a.arg(1))?.value.isNull == true ? nil : try a.string(1)
            let payload: [UInt8]? = (try a.arg(2)).value.isNull ? nil : try a.bytes(2)
            let ring = KeySerial(try a.i32(a.count > 4 ? 4 : 3, [.keySpec]))
            let requested = line.result.int64Value.flatMap { $0 > 0 ? KeySerial(Int32(truncatingIfNeeded: $0)) : nil }
            let r = kernel.addKey(pid, type: type, description: desc, payload: payload, keyring: ring,
                                  requestedSerial: requested)
            return Self.outcome(r.map { Int64($0.rawValue) })
        case .keyctl:
            let op = try a.i32(0, [.keyctl])
            let id = KeySerial(a.count > 1 ? try a.i32(1, [.keySpec]) : 0)
            var ring = KeySerial(0)
            var payload: [UInt8]? = nil
            if op == 9, a.count > 2 { ring = KeySerial(try a.i32(2, [.keySpec])) }          // UNLINK
            if op == 2, a.count > 2, !(try a.arg(2)).value.isNull { payload = try a.bytes(2) } // UPDATE
            var arg3: UInt64 = 0, arg4: UInt64 = 0
            if op == 5, a.count > 2 { arg3 = try a.u64(2, [.keyPerm]) }                        // SETPERM
            if op == 4, a.count > 3 { arg3 = try a.u64(2); arg4 = try a.u64(3) }              // CHOWN
            let r = kernel.keyctl(pid, op, id, keyring: ring, payload: payload, arg3: arg3, arg4: arg4)
            return Self.outcome(r.map { Int64($0.value) })
        case .mem_write:
            let bytes = try a.bytes(1)
            switch kernel.memWrite(task, VirtAddr(try a.u64(0)), bytes) {
            case .ok(let n): return .value(Int64(n))
            case .signal(let s): return .signal(Self.name(s))
            }
        case .mem_read:
            let length = try a.u64(1)
            guard length <= 1 << 24 else {
                throw TraceError(location: line.location(ofArgument: 1), message: "mem_read of \(length) bytes: at most 16 MiB per call")
            }
            switch kernel.memRead(task, VirtAddr(try a.u64(0)), Int(length)) {
            case .ok(let b): return .bytes(b)
            case .signal(let s): return .signal(Self.name(s))
            }
        case .mem_touch:
            let access = Prot(rawValue: UInt32(truncatingIfNeeded: a.count > 2 ? try a.u64(2, [.prot]) : UInt64(Prot.read.rawValue)))
            return .value(Int64(kernel.memTouch(task, VirtAddr(try a.u64(0)), try a.u64(1), access)))
        case .virt_to_phys:
            guard let pa = kernel.virtToPhys(task, VirtAddr(try a.u64(0))) else { return .error(.EFAULT) }
            return .address(pa.rawValue)
        case .phys_read:
            let pa = try a.u64(0)
            let length = try a.u64(1)
            let limit = kernel.machine.config.installedDRAM.rawValue
            guard length <= 1 << 24, pa < limit, length <= limit - pa else {
                throw TraceError(location: line.location(ofArgument: 0), message: "phys_read(0x\(String(pa, radix: 16)), \(length)) is outside physical memory (\(kernel.machine.config.memory) of memory + \(kernel.machine.config.epc) of EPC) or over 16 MiB")
            }
            return .bytes(kernel.machine.physRead(PhysAddr(pa), count: Int(length)))
        case .wbinvd:
            kernel.machine.wbinvd()
            return .value(0)
        case .file_create:
            let size = try a.u64(1)
            kernel.fileCreate(path: try a.string(0), size: size)
            return .value(0)
        case .openat, .open:
            let base = call == .openat ? 1 : 0
            if call == .openat {
                let dirfd = try a.i32(0, [.at])
                guard dirfd == -100 else { return nil }   // only AT_FDCWD paths name model files
            }
            let flags = OpenFlags(rawValue: try a.i32(base + 1, [.open]))
            let wanted = line.result.int64Value.flatMap { $0 >= 0 ? Int32(truncatingIfNeeded: $0) : nil }
            let path: String
            if lenient, (try a.arg(base)).value.unnamed.string == nil {
                // perf trace prints the filename as a user pointer: the file is known only by
                // the line that opened it, and its size is unknown (no SIGBUS is invented).
                path = "<file opened at \(line.location.file):\(line.location.line)>"
                if wanted != nil { kernel.fileCreate(path: path, size: 1 << 40) }
            } else {
                path = try a.string(base)
            }
            // A real program's log opens real files the model has never seen: the file exists
            // because the log says the open succeeded (its size comes from the next fstat).
            if lenient, wanted != nil, !flags.contains(.create), kernel.file(at: path) == nil {
                kernel.fileCreate(path: path, size: 0)
            }
            // A failed open of a file the model does not know (`/dev/tty` = ENXIO without a
            // terminal, EACCES, ENOENT): the host's file system answered, not the mm; the
            // recorded result is the truth, learned like a size from fstat, never compared.
            if lenient, let name = line.result.errnoName, kernel.file(at: path) == nil {
                return learn(line, name)
            }
            return Self.outcome(kernel.openat(pid, path: path, flags: flags, fd: wanted).map { Int64($0) })
        case .close:
            let fd = try a.i32(0)
            // A real log closes pipes, sockets and other fds the model never opened.
            if lenient, task.files.fds[fd] == nil { return nil }
            return Self.outcome(kernel.close(pid, fd: fd))
        case .fstat, .newfstatat:
            return try stat(call, a: &a, task: task, kernel: kernel)
        case .memfd_create:
            let flags = UInt32(truncatingIfNeeded: a.count > 1 ? try a.u64(1, [.memfd]) : 0)
            if flags & 0x4 != 0 { return nil }   // MFD_HUGETLB: no hugetlbfs in the model
            let wanted = line.result.int64Value.flatMap { $0 >= 0 ? Int32(truncatingIfNeeded: $0) : nil }
            return Self.outcome(kernel.memfdCreate(pid, name: try a.string(0), flags: flags, fd: wanted).map { Int64($0) })
        case .ftruncate:
            let fd = try a.i32(0)
            // A real log truncates files the model never opened.
            if lenient, task.files.fds[fd] == nil { return nil }
            return Self.outcome(kernel.ftruncate(pid, fd: fd, length: try a.i64(1)))
        case .truncate:
            let path = try a.string(0)
            if lenient, kernel.file(at: path) == nil { return nil }
            return Self.outcome(kernel.truncate(pid, path: path, length: try a.i64(1)))
        default:
            return try executeMKTME(call, a: &a, line: line, task: task, kernel: kernel, lenient: lenient)
        }
    }

    /// fstat/newfstatat: a regular file's `st_size` in the line teaches the model the size
    /// (the contract's "sizes learned from fstat/newfstatat lines"). Stats of paths or fds the
    /// model does not know are not modeled.
    private func stat(_ call: ModeledCall, a: inout Arguments, task: TaskStruct, kernel: Kernel) throws(TraceError) -> CallOutcome? {
        let statIndex = call == .fstat ? 1 : 2
        guard a.count > statIndex else { return nil }
        var file: MappedFile?
        var fd: Int32?
        if call == .fstat || ((try? a.string(1)) ?? "") == "" {
            let n = try a.i32(0, [.at])
            fd = n
            file = task.files.fds[n]?.file
        } else {
            file = kernel.file(at: try a.string(1))
        }
        guard let file else { return nil }
        let st = try a.arg(statIndex)
        if let modeField = try? st.field("st_mode"), let mode = try? modeField.asUInt64([.fileMode]),
           mode & 0o170000 == 0o100000, let size = try? st.field("st_size").asUInt64() {
            file.size = size
        }
        if let fd { return Self.outcome(kernel.fstatSize(task.pid, fd: fd).map { _ in Int64(0) }) }
        return .value(0)
    }

    static func name(_ s: MemSignal) -> String {
        switch s {
        case .sigsegv: "SIGSEGV"
        case .sigbus: "SIGBUS"
        case .sigkill: "SIGKILL"
        }
    }
}

// MARK: - MKTME calls (issue 4): encrypt_mprotect, pins, kernel-thread passes, NUMA syscalls,
// sleeps (modeled time for key_gc_delay), clflush, vvar_map.
extension SyscallDispatcher {
    mutating func executeMKTME(_ call: ModeledCall, a: inout Arguments, line: SyscallLine,
                               task: TaskStruct, kernel: Kernel, lenient: Bool) throws(TraceError) -> CallOutcome? {
        let pid = task.pid
        let recordedValue = line.result.errnoName == nil ? line.result.int64Value : nil
        switch call {
        case .encrypt_mprotect:
            return Self.outcome(kernel.encryptMprotect(pid, addr: VirtAddr(try a.u64(0)), length: try a.u64(1),
                                                       prot: Prot(rawValue: UInt32(truncatingIfNeeded: try a.u64(2, [.prot]))),
                                                       serial: KeySerial(try a.i32(3, [.keySpec]))))
        case .clflush:
            if let s = kernel.clflushUser(task, VirtAddr(try a.u64(0)), try a.u64(1)) { return .signal(Self.name(s)) }
            return .value(0)
        case .gup_pin:
            let n = try a.i64(1)
            guard n > 0, n <= 1 << 24 else {
                throw TraceError(location: line.location(ofArgument: 1), message: "gup_pin of \(n) pages: NPAGES is 1 ... 16777216")
            }
            let want = recordedValue.flatMap { $0 > 0 && $0 <= Int64(Int32.max) ? Int32($0) : nil }
            return Self.outcome(kernel.gupPin(task, VirtAddr(try a.u64(0)), Int(n), handle: want).map { Int64($0) })
        case .gup_unpin:
            return Self.outcome(kernel.gupUnpin(try a.i32(0)))
        case .ksm_scan:
            return .value(Int64(kernel.ksmScan()))
        case .khugepaged_scan:
            return .value(Int64(kernel.khugepagedScan()))
        case .numa_balance:
            return .value(Int64(kernel.numaBalance()))
        case .reclaim:
            let n = try a.i64(0)
            guard n >= 0, n <= 1 << 24 else {
                throw TraceError(location: line.location(ofArgument: 0), message: "reclaim of \(n) pages: NPAGES is 0 ... 16777216")
            }
            return .value(Int64(kernel.reclaim(Int(n))))
        case .set_mempolicy:
            return Self.outcome(kernel.setMempolicy(pid, mode: try a.i64(0, [.mpol]), nodemask: try nodemask(&a, 1),
                                                    maxnode: a.count > 2 ? try a.u64(2) : 0))
        case .mbind:
            return Self.outcome(kernel.mbind(pid, start: VirtAddr(try a.u64(0)), length: try a.u64(1),
                                             mode: try a.i64(2, [.mpol]), nodemask: try nodemask(&a, 3),
                                             maxnode: a.count > 4 ? try a.u64(4) : 0,
                                             flags: UInt32(truncatingIfNeeded: a.count > 5 ? try a.u64(5, [.mpol]) : 0)))
        case .migrate_pages:
            return Self.outcome(kernel.migratePagesSyscall(pid, target: try a.i32(0), maxnode: try a.u64(1),
                                                           oldNodes: try nodemask(&a, 2), newNodes: try nodemask(&a, 3)))
        case .move_pages:
            let count = try a.i64(1)
            let pages = try integers(&a, 2) ?? []
            guard count >= 0, Int64(pages.count) >= count else {
                throw TraceError(location: line.location(ofArgument: 2), message: "move_pages: COUNT is \(count) but the pages array has \(pages.count) addresses")
            }
            let nodes = try integers(&a, 3).map { $0.map { Int64(bitPattern: $0) } }
            let flags = UInt32(truncatingIfNeeded: a.count > 5 ? try a.u64(5, [.mpol]) : 0)
            let r = kernel.movePages(pid, target: try a.i32(0), pages: pages.prefix(Int(count)).map { VirtAddr($0) },
                                     nodes: nodes, flags: flags)
            return Self.outcome(r.map { Int64($0.0) })
        case .nanosleep, .clock_nanosleep:
            let i = call == .nanosleep ? 0 : 2
            let ts = try a.arg(i)
            let sec = try ts.field("tv_sec").asUInt64()
            let nsec = try ts.field("tv_nsec").asUInt64()
            var s = sec, ns = nsec
            if call == .clock_nanosleep, a.count > 1, try a.u64(1) & 1 != 0, nsec < 1_000_000_000 {
                // TIMER_ABSTIME: sleep until that modeled time (seconds since boot).
                let target = Double(sec) + Double(nsec) / 1e9
                let delta = max(0, target - kernel.modeledSeconds)
                s = UInt64(delta.rounded(.down))
                ns = min(UInt64(((delta - Double(s)) * 1e9).rounded(.down)), 999_999_999)
            }
            return Self.outcome(kernel.nanosleep(pid, seconds: s, nanoseconds: ns))
        case .vvar_map:
            let npages = try a.i64(1)
            let index = try a.i64(2)
            var keyid: KeyID? = nil
            if a.count > 3 {
                switch kernel.keys.keyidForEncryptMprotect(serial: KeySerial(try a.i32(3, [.keySpec])), cred: task.cred,
                                                           process: ProcessKeyrings(pid: pid.rawValue)) {
                case .failure(let e): return .error(e)
                case .success(let k): keyid = k
                }
            }
            guard npages > 0, npages <= 512, index >= -1, index < npages else {
                throw TraceError(location: line.location(ofArgument: 1), message: "vvar_map(ADDR, NPAGES, DECRYPTED_INDEX[, KEY_SERIAL]): NPAGES is 1 ... 512 and DECRYPTED_INDEX -1 (none) ... NPAGES-1")
            }
            return Self.outcome(kernel.vvarMap(task, addr: VirtAddr(try a.u64(0)), npages: Int(npages),
                                               decryptedIndex: Int(index), encryptedKeyID: keyid).map { _ in () })
        case .hugetlb_map:
            return Self.outcome(kernel.hugetlbMap(task, addr: VirtAddr(try a.u64(0)), length: try a.u64(1),
                                                  prot: Prot(rawValue: UInt32(truncatingIfNeeded: try a.u64(2, [.prot])))).map { _ in () })
        default:
            if let o = try executeSGX(call, a: &a, line: line, task: task, kernel: kernel) { return o }   // SGXCalls.swift
            return try executeCredentials(call, a: &a, line: line, task: task, kernel: kernel, lenient: lenient)
        }
    }

    /// A nodemask argument: NULL, one integer, or an array of 64-bit words (strace: [0x2]).
    private func nodemask(_ a: inout Arguments, _ i: Int) throws(TraceError) -> [UInt64]? {
        guard a.count > i else { return nil }
        return try integers(&a, i)
    }

    /// An array-of-integers argument (NULL: nil; a single integer: one element).
    private func integers(_ a: inout Arguments, _ i: Int) throws(TraceError) -> [UInt64]? {
        let arg = try a.arg(i)
        switch arg.value.unnamed {
        case .null:
            return nil
        case .array(let elements, _):
            var out: [UInt64] = []
            for e in elements {
                out.append(try TraceArgument(value: e, index: i, call: arg.call, location: arg.location).asUInt64())
            }
            return out
        default:
            return [try arg.asUInt64()]
        }
    }
}
