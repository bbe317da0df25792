// The NUMA system calls (mm/mempolicy.c, mm/migrate.c, Linux 6.18): set_mempolicy(2),
// mbind(2), migrate_pages(2), move_pages(2), with their argument checks and errno in the
// kernel's order, on the model's nodes. Every migration they trigger allocates the new page
// with the SOURCE page's KeyID (docs/sources.md, seed 001; PageAllocator.allocPageForMigration), so encrypted
// memory moves between nodes as ciphertext re-encrypted for its new physical address, readable
// through the same KeyID.
//
// Checks (in order): sanitize_mpol_flags (mode >= MPOL_MAX, STATIC|RELATIVE together,
// NUMA_BALANCING outside BIND/PREFERRED_MANY: EINVAL); get_nodes (maxnode - 1 > PAGE_SIZE*8
// with a non-NULL mask: EINVAL; bits set beyond MAX_NUMNODES: EINVAL); mbind: flags outside
// STRICT|MOVE|MOVE_ALL EINVAL, MOVE_ALL without CAP_SYS_NICE EPERM, unaligned start EINVAL,
// end < start EINVAL, len 0 -> 0; mpol_new (DEFAULT with nodes, LOCAL with nodes, other modes
// with no nodes: EINVAL; PREFERRED with none is LOCAL); mpol_set_nodemask (no online node in
// the mask: EINVAL); mbind over a hole anywhere in the range: EFAULT before anything changes;
// MPOL_MF_STRICT with pages that could not be moved: EIO. move_pages: flags EINVAL, MOVE_ALL
// EPERM, unknown pid ESRCH, a target node that does not exist ENODEV (the whole call); per page:
// -EFAULT (no VMA / nothing mappable), -ENOENT (not present), -EACCES (shared without
// MOVE_ALL), -EBUSY (pinned); returns the number of pages not migrated. migrate_pages: get_nodes
// of both masks, unknown pid ESRCH, new nodes outside the task's (CAP_SYS_NICE exempt) EPERM,
// no online node in new EINVAL; returns the pages that could not be moved.
//
// Model simplifications: the model has no cpusets (every node is allowed), no ptrace-access
// checks (every caller may target every pid), MAX_NUMNODES is 1024 (CONFIG_NODES_SHIFT 10), and
// a task policy (set_mempolicy) is recorded and reported but placement reads VMA policies only.
import KeyMMBase

/// MAX_NUMNODES with CONFIG_NODES_SHIFT=10 (x86-64 distribution kernels).
public let maxNumNodes: UInt64 = 1024

/// mbind/migration flags (MPOL_MF_*).
public struct MPolMoveFlags: OptionSet, Hashable, Sendable {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let strict = MPolMoveFlags(rawValue: 1)
    public static let move = MPolMoveFlags(rawValue: 2)
    public static let moveAll = MPolMoveFlags(rawValue: 4)
    public static let valid: MPolMoveFlags = [.strict, .move, .moveAll]
}

/// CAP_SYS_NICE (bit 23).
let capSysNice = CapabilitySet(rawValue: 1 << 23)

extension Kernel {
    // MARK: argument decoding

    /// sanitize_mpol_flags(): (mode, mode flags) or EINVAL.
    func sanitizeMpolFlags(_ modeIn: Int64) -> Result<(mode: Int, flags: UInt32), Errno> {
        let modeFlags: Int64 = (1 << 15) | (1 << 14) | (1 << 13)
        guard modeIn >= 0, modeIn <= Int64(UInt32.max) else { return .failure(.EINVAL) }
        let flags = UInt32(modeIn & modeFlags)
        let mode = Int(modeIn & ~modeFlags)
        if mode >= 7 { return .failure(.EINVAL) }
        if flags & (1 << 15) != 0 && flags & (1 << 14) != 0 { return .failure(.EINVAL) }
        if flags & (1 << 13) != 0 && mode != 2 && mode != 5 { return .failure(.EINVAL) }
        return .success((mode, flags))
    }

    /// get_nodes(): the nodes of a user nodemask (`words`, 64 bits each; nil = NULL) of
    /// `maxnode` bits (the kernel uses maxnode - 1 of them).
    func getNodes(_ words: [UInt64]?, maxnode maxnodeIn: UInt64) -> Result<[Int], Errno> {
        let maxnode = maxnodeIn &- 1
        guard let words, maxnode != 0 else { return .success([]) }
        if maxnode > UInt64(pageSize * 8) { return .failure(.EINVAL) }
        var nodes: [Int] = []
        for bit in 0..<Int(maxnode) {
            let w = bit / 64
            guard w < words.count else { break }
            if words[w] >> UInt64(bit % 64) & 1 == 1 {
                if UInt64(bit) >= maxNumNodes { return .failure(.EINVAL) }
                nodes.append(bit)
            }
        }
        return .success(nodes)
    }

    /// mpol_new() + mpol_set_nodemask(): the policy (nil = MPOL_DEFAULT) or EINVAL.
    func mpolNew(mode: Int, flags: UInt32, nodes: [Int]) -> Result<MemoryPolicy?, Errno> {
        let staticOrRelative = flags & ((1 << 15) | (1 << 14)) != 0
        var m = mode
        switch mode {
        case 0:
            return nodes.isEmpty ? .success(nil) : .failure(.EINVAL)
        case 1:
            if nodes.isEmpty {
                if staticOrRelative { return .failure(.EINVAL) }
                m = 4
            }
        case 4:
            if !nodes.isEmpty || staticOrRelative { return .failure(.EINVAL) }
        default:
            if nodes.isEmpty { return .failure(.EINVAL) }
        }
        if m == 4 { return .success(MemoryPolicy(mode: .local, nodes: [])) }
        // N_MEMORY & mems_allowed: the model's online nodes (no cpusets).
        let online = nodes.filter { $0 < machine.config.nodes }.map { NodeID(UInt8($0)) }
        if online.isEmpty { return .failure(.EINVAL) }
        let kind: MemoryPolicy.Mode
        switch m {
        case 1, 5: kind = .preferred                // PREFERRED_MANY: prefer the first
        case 2: kind = .bind
        default: kind = .interleave                 // INTERLEAVE, WEIGHTED_INTERLEAVE (weights 1)
        }
        return .success(MemoryPolicy(mode: kind, nodes: kind == .preferred ? [online[0]] : online))
    }

    // MARK: set_mempolicy

    /// set_mempolicy(2): the calling task's policy.
    public func setMempolicy(_ pid: ProcessID, mode: Int64, nodemask: [UInt64]?, maxnode: UInt64) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard tasks[pid] != nil else { return .failure(.ESRCH) }
        let mf: (mode: Int, flags: UInt32)
        switch sanitizeMpolFlags(mode) { case .failure(let e): return .failure(e); case .success(let v): mf = v }
        let nodes: [Int]
        switch getNodes(nodemask, maxnode: maxnode) { case .failure(let e): return .failure(e); case .success(let n): nodes = n }
        switch mpolNew(mode: mf.mode, flags: mf.flags, nodes: nodes) {
        case .failure(let e): return .failure(e)
        case .success(let pol): mktme.taskPolicies[pid.rawValue] = pol
        }
        return .success(())
    }

    /// The task's policy as set_mempolicy left it (MPOL_DEFAULT: nil).
    public func taskMempolicy(_ pid: ProcessID) -> MemoryPolicy? { mktme.taskPolicies[pid.rawValue] }

    // MARK: mbind

    /// mbind(2).
    public func mbind(_ pid: ProcessID, start: VirtAddr, length: UInt64, mode: Int64, nodemask: [UInt64]?,
                      maxnode: UInt64, flags rawFlags: UInt32) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        let mf: (mode: Int, flags: UInt32)
        switch sanitizeMpolFlags(mode) { case .failure(let e): return .failure(e); case .success(let v): mf = v }
        let nodes: [Int]
        switch getNodes(nodemask, maxnode: maxnode) { case .failure(let e): return .failure(e); case .success(let n): nodes = n }
        var flags = MPolMoveFlags(rawValue: rawFlags)
        if !flags.subtracting(.valid).isEmpty { return .failure(.EINVAL) }
        if flags.contains(.moveAll) && !task.cred.capable(capSysNice) { return .failure(.EPERM) }
        if !start.isPageAligned { return .failure(.EINVAL) }
        if mf.mode == 0 { flags.remove(.strict) }
        let len = pageAlignUp(length) ?? 0
        let (endRaw, overflow) = start.rawValue.addingReportingOverflow(len)
        if overflow || (length != 0 && len == 0) { return .failure(.EINVAL) }
        if endRaw == start.rawValue { return .success(()) }
        let end = VirtAddr(endRaw)
        let policy: MemoryPolicy
        switch mpolNew(mode: mf.mode, flags: mf.flags, nodes: nodes) {
        case .failure(let e): return .failure(e)
        case .success(let p): policy = p ?? .default
        }
        let mm = task.mm
        // queue_pages_range(): any hole in [start, end) is EFAULT before anything changes.
        var a = start
        var vmas: [VMA] = []
        while a < end {
            guard let v = mm.findVMA(a), v.vmStart <= a else { return .failure(.EFAULT) }
            vmas.append(v)
            a = v.vmEnd
        }
        // Pages to move (MPOL_MF_MOVE[_ALL]) are the ones not on an allowed node.
        var failed = 0
        // mbind_range(): vma_modify_policy for every VMA piece.
        var prev: VMA? = nil
        if let first = vmas.first { prev = start > first.vmStart ? first : mm.prev(of: first) }
        for v in vmas {
            let s = max(start, v.vmStart), e = min(end, v.vmEnd)
            if v.memoryPolicy == policy { prev = v; continue }
            var vmg = VMAMergeState(prev: prev, vma: v, start: s, end: e)
            vmg.policy = policy
            switch vmaModify(mm, &vmg) {
            case .failure(let err): return .failure(err)
            case .success(let m):
                m.memoryPolicy = policy
                prev = m
            }
        }
        if !flags.isDisjoint(with: [.move, .moveAll]), policy.mode != .default, policy.mode != .local {
            let allowed = Set(policy.nodes)
            let target = policy.nodes[0]
            var v = mm.findVMA(start)
            while let cur = v, cur.vmStart < end {
                if vmaMigratable(cur) {
                    failed += migratePagesNotOn(mm, cur, max(start, cur.vmStart), min(end, cur.vmEnd),
                                                allowed: allowed, to: target, moveShared: flags.contains(.moveAll))
                }
                v = mm.next(of: cur)
            }
        }
        if failed > 0 && flags.contains(.strict) { return .failure(.EIO) }
        return .success(())
    }

    /// vma_migratable(): not VM_IO/VM_PFNMAP (hugetlb: the model has no hugetlb pages).
    func vmaMigratable(_ vma: VMA) -> Bool { vma.vmFlags.isDisjoint(with: [.io, .pfnMap, .hugeTLB]) }

    /// Moves the mapped pages of [start, end) that are not on an `allowed` node to `to`;
    /// returns pages (4 KiB units) that could not move.
    func migratePagesNotOn(_ mm: MM, _ vma: VMA, _ start: VirtAddr, _ end: VirtAddr, allowed: Set<NodeID>,
                           to node: NodeID, moveShared: Bool) -> Int {
        var addrs: [(VirtAddr, Bool)] = []
        PageWalk.forEachEntry(of: vma, in: mm, from: start, to: end) { e in if !e.isSpecial { addrs.append((e.address, e.isHuge)) } }
        var failed = 0
        for (a, huge) in addrs {
            guard let pa = virtToPhys(mm, a), !allowed.contains(allocator.node(of: pa.pfn)) else { continue }
            switch migrateMappedPage(mm, a, to: node, moveShared: moveShared) {
            case .node, .error(.EFAULT): break
            case .error: failed += huge ? hpagePMDNr : 1
            }
        }
        return failed
    }

    // MARK: migrate_pages

    /// migrate_pages(2): moves `target`'s pages on `old` nodes to the corresponding `new` nodes
    /// (node_remap). Returns the number of pages that could not be moved.
    public func migratePagesSyscall(_ pid: ProcessID, target: Int32, maxnode: UInt64, oldNodes: [UInt64]?,
                                    newNodes: [UInt64]?) -> Result<Int, Errno> {
        machine.clock.charge(.syscall)
        guard let caller = tasks[pid] else { return .failure(.ESRCH) }
        let old: [Int], new: [Int]
        switch getNodes(oldNodes, maxnode: maxnode) { case .failure(let e): return .failure(e); case .success(let n): old = n }
        switch getNodes(newNodes, maxnode: maxnode) { case .failure(let e): return .failure(e); case .success(let n): new = n }
        guard let task = target == 0 ? caller : tasks[ProcessID(target)] else { return .failure(.ESRCH) }
        let online = 0..<machine.config.nodes
        if !new.allSatisfy({ online.contains($0) }) && !caller.cred.capable(capSysNice) { return .failure(.EPERM) }
        let to = new.filter { online.contains($0) }
        if to.isEmpty { return .failure(.EINVAL) }
        let from = old.filter { online.contains($0) }
        let moveShared = caller.cred.capable(capSysNice)
        var failed = 0
        let mm = task.mm
        for vma in mm.allVMAs where vmaMigratable(vma) {
            var addrs: [(VirtAddr, Bool)] = []
            PageWalk.forEachEntry(of: vma, in: mm) { e in if !e.isSpecial { addrs.append((e.address, e.isHuge)) } }
            for (a, huge) in addrs {
                guard let pa = virtToPhys(mm, a) else { continue }
                let src = Int(allocator.node(of: pa.pfn).rawValue)
                guard let i = from.firstIndex(of: src) else { continue }
                let dst = to[i % to.count]                   // node_remap()
                if dst == src { continue }
                switch migrateMappedPage(mm, a, to: NodeID(UInt8(dst)), moveShared: moveShared) {
                case .node, .error(.EFAULT): break
                case .error: failed += huge ? hpagePMDNr : 1
                }
            }
        }
        return .success(failed)
    }

    // MARK: move_pages

    /// One move_pages(2) status: a node number or a negative errno.
    public enum MovePageStatus: Equatable, Sendable {
        case node(Int)
        case error(Errno)
    }

    /// move_pages(2): with `nodes` nil, reports each page's node (do_pages_stat); otherwise moves
    /// page i to nodes[i]. Returns (pages not migrated, per-page status).
    public func movePages(_ pid: ProcessID, target: Int32, pages: [VirtAddr], nodes: [Int64]?,
                          flags rawFlags: UInt32) -> Result<(Int, [MovePageStatus]), Errno> {
        machine.clock.charge(.syscall)
        guard let caller = tasks[pid] else { return .failure(.ESRCH) }
        let flags = MPolMoveFlags(rawValue: rawFlags)
        if !flags.subtracting([.move, .moveAll]).isEmpty { return .failure(.EINVAL) }
        if flags.contains(.moveAll) && !caller.cred.capable(capSysNice) { return .failure(.EPERM) }
        guard let task = target == 0 ? caller : tasks[ProcessID(target)] else { return .failure(.ESRCH) }
        let mm = task.mm
        var status: [MovePageStatus] = []
        status.reserveCapacity(pages.count)
        guard let nodes else {
            for p in pages { status.append(pageStatus(mm, p)) }
            return .success((0, status))
        }
        guard nodes.count >= pages.count else { return .failure(.EFAULT) }
        var notMigrated = 0
        for (i, p) in pages.enumerated() {
            let n = nodes[i]
            if n < 0 || UInt64(n) >= maxNumNodes || n >= Int64(machine.config.nodes) { return .failure(.ENODEV) }
            let st = pageStatus(mm, p)
            guard case .node(let cur) = st else { status.append(st); continue }
            if cur == Int(n) { status.append(.node(cur)); continue }
            switch migrateMappedPage(mm, p.pageDown, to: NodeID(UInt8(n)), moveShared: flags.contains(.moveAll)) {
            case .node(let got): status.append(.node(Int(got.rawValue)))
            case .error(let e):
                status.append(.error(e))
                if e != .EFAULT && e != .ENOENT { notMigrated += 1 }
            }
        }
        return .success((notMigrated, status))
    }

    /// do_pages_stat() for one address: the node, -EFAULT (no VMA, special, zero page) or
    /// -ENOENT (nothing present).
    func pageStatus(_ mm: MM, _ addr: VirtAddr) -> MovePageStatus {
        guard let vma = mm.vma(containing: addr), vmaMigratable(vma) else { return .error(.EFAULT) }
        let pt = mm.pageTable
        switch pt.walk(addr) {
        case .none: return .error(.ENOENT)
        case .huge(let ps):
            let e = pt[ps]
            guard e.isPresent else { return .error(.ENOENT) }
            if e.isSpecial { return .error(.EFAULT) }
            return .node(Int(allocator.node(of: e.hugePFN(layout)).rawValue))
        case .pte(_, let slot):
            let e = pt[slot]
            guard e.isPresent else { return .error(.ENOENT) }
            if e.isSpecial { return .error(.EFAULT) }
            return .node(Int(allocator.node(of: e.pfn(layout)).rawValue))
        }
    }
}
