// The model's file system and file descriptors: files exist because a scenario declared
// them (file_create) or opened them with O_CREAT; openat/close/fstat manage a per-task fd
// table; special mappings (vvar, drivers, enclaves) are installed with their vm_ops.
//
// Invariants: inode numbers are handed out in creation order starting at 1000 (so results
// are deterministic); fds are the lowest free number >= 3; an open file keeps its inode
// alive after it is unlinked (the model never unlinks).
import KeyMMBase

extension Kernel {
    /// Device number the model's regular files report (major 8, minor 1).
    public static let fileDevice: (major: UInt32, minor: UInt32) = (8, 1)

    /// file_create("path", SIZE) (model-only): creates the file, or sets its size.
    @discardableResult
    public func fileCreate(path: String, size: UInt64) -> MappedFile {
        if let f = filesystem[path] {
            f.size = size
            return f
        }
        let f = MappedFile(path: path, inode: nextInode, device: Kernel.fileDevice, size: size)
        nextInode &+= 1
        filesystem[path] = f
        return f
    }

    /// The file at `path`, if it exists.
    public func file(at path: String) -> MappedFile? { filesystem[path] }

    /// openat(2) (AT_FDCWD; paths are taken as given).
    public func openat(_ pid: ProcessID, path: String, flags: OpenFlags, fd wanted: Int32? = nil) -> Result<Int32, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        if path.isEmpty { return .failure(.ENOENT) }
        var file = filesystem[path]
        if file != nil && flags.contains(.create) && flags.contains(.exclusive) { return .failure(.EEXIST) }
        if file == nil {
            guard flags.contains(.create) else { return .failure(.ENOENT) }
            file = fileCreate(path: path, size: 0)
        }
        guard let f = file else { return .failure(.ENOENT) }
        let mode = flags.accessMode
        if mode == 3 { return .failure(.EINVAL) }
        if flags.contains(.truncate) && mode != 0 && f.charDevice == nil { f.size = 0 }
        var fd = task.files.lowestFree()
        if let w = wanted, w >= 0, task.files.fds[w] == nil { fd = w }
        if let dev = f.charDevice {
            // A device node: the driver's ->open makes the description (mm/CharDevice.swift).
            if let e = dev.open(self, task, openID: nextOpenID) { return .failure(e) }
            openDevices[nextOpenID] = OpenDevice(file: f, references: 1)
        }
        task.files.fds[fd] = FileTable.OpenFile(file: f, accessMode: mode, openID: nextOpenID)
        nextOpenID &+= 1
        return .success(fd)
    }

    /// close(2).
    public func close(_ pid: ProcessID, fd: Int32) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        guard let of = task.files.fds.removeValue(forKey: fd) else { return .failure(.EBADF) }
        fileDescriptionPut(of.openID)                    // mm/CharDevice.swift
        if of.file.isMemfd { releaseMemfdIfUnreferenced(of.file) }
        return .success(())
    }

    /// exit_files(): a dying task drops its fd table; the last task using the table (CLONE_FILES
    /// shares it) closes every fd: a device's description loses a reference (mm/CharDevice.swift),
    /// a memfd nothing else reaches is released. Called by mm/Fork.swift after the task left
    /// `tasks` and after exit_mm.
    func exitFiles(_ task: TaskStruct) {
        if tasks.values.contains(where: { $0.files === task.files }) { return }
        let fds = task.files.fds
        task.files.fds.removeAll()
        for fd in fds.keys.sorted() { fileDescriptionPut(fds[fd]!.openID) }
        for fd in fds.keys.sorted() where fds[fd]!.file.isMemfd { releaseMemfdIfUnreferenced(fds[fd]!.file) }
    }

    /// fstat(2), reduced to the size.
    public func fstatSize(_ pid: ProcessID, fd: Int32) -> Result<UInt64, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        guard let of = task.files.fds[fd] else { return .failure(.EBADF) }
        return .success(of.file.size)
    }

    /// _install_special_mapping(): a VMA backed by `ops` (e.g. vvar with VM_IO|VM_PFNMAP, or
    /// a driver mapping with a close hook). VM_DONTEXPAND is added as the kernel does.
    @discardableResult
    public func installSpecialMapping(_ pid: ProcessID, addr: VirtAddr, length: UInt64, flags: VMFlags,
                                      ops: VMOperations?, file: MappedFile? = nil, pgoff: UInt64 = 0,
                                      keyid: KeyID = .tme) -> Result<VMA, Errno> {
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        let mm = task.mm
        guard addr.isPageAligned, let len = pageAlignUp(length), len > 0 else { return .failure(.EINVAL) }
        let end = addr.advanced(by: len)
        if firstIntersecting(mm, addr, end) != nil { return .failure(.ENOMEM) }
        var f = flags.union(mm.defFlags).union(.dontExpand)
        if config.softDirty { f.insert(.softDirty) }
        let vma = vmAreaAlloc(start: addr, end: end, pgoff: file == nil && ops == nil ? addr.pageNumber : pgoff,
                              flags: f, keyid: keyid, file: file)
        vma.vmOps = ops
        mm.vmas.insert(vma)
        vmStatAccount(mm, f, Int64(len >> pageShift))
        return .success(vma)
    }
}
