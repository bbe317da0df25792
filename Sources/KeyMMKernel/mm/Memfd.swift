// memfd_create(2) (mm/memfd.c): an anonymous shmem file reached through an fd, created empty
// (size 0: ftruncate gives it its size, mm/Truncate.swift) and shown in /proc/PID/maps as
// "/memfd:NAME (deleted)" on the internal shmem mount (device 00:01).
//
// Simplifications: no file seals (MFD_ALLOW_SEALING is accepted, F_ADD_SEALS is not
// modeled), no hugetlb memfds (the caller does not model MFD_HUGETLB).
//
// Invariant: a memfd is a shmem inode (`isShmem`) whose pages survive its last mapping while
// an fd of a live task still reaches it (mm/Shmem.swift releases it when neither does).
import KeyMMBase

extension Kernel {
    /// MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC.
    static let memfdFlags: UInt32 = 0x1F
    /// NAME_MAX - strlen("memfd:").
    static let memfdNameMax = 249

    /// memfd_create(2): the new fd (`fd` when the trace recorded it and it is free). Unknown
    /// flags, MFD_EXEC with MFD_NOEXEC_SEAL, or a name longer than 249 bytes: EINVAL.
    public func memfdCreate(_ pid: ProcessID, name: String, flags: UInt32, fd wanted: Int32? = nil) -> Result<Int32, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        if flags & ~Kernel.memfdFlags != 0 && flags & 0x4 == 0 { return .failure(.EINVAL) }   // size bits need MFD_HUGETLB
        if flags & 0x18 == 0x18 { return .failure(.EINVAL) }
        if name.utf8.count > Kernel.memfdNameMax { return .failure(.EINVAL) }
        let f = MappedFile(path: "/memfd:\(name) (deleted)", inode: nextShmemInode, device: (0, 1), size: 0)
        nextShmemInode &+= 1
        f.isShmem = true
        f.isMemfd = true
        var fd = task.files.lowestFree()
        if let w = wanted, w >= 0, task.files.fds[w] == nil { fd = w }
        task.files.fds[fd] = FileTable.OpenFile(file: f, accessMode: 2, openID: nextOpenID)
        nextOpenID &+= 1
        return .success(fd)
    }
}
