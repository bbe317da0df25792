// Character devices of the model's /dev (devtmpfs) and the reference count of their open file
// descriptions: struct file_operations (open, release, get_unmapped_area, mmap) for a node such as
// /dev/sgx_enclave, and fget/fput of a description by the fds that name it (in every task, after
// fork) and by the VMAs that map it (vma->vm_file). The driver's release runs when the last of
// them goes, as __fput() calls ->release. Regular files keep the simpler model of Files.swift.
//
// Invariants: a description of a device node is in `openDevices` exactly while some fd or VMA
// refers to it, and its count is the number of those references; ->release runs once, when the
// count reaches zero (exit drops a task's fds after its mm, as do_exit runs exit_files after
// exit_mm).
import KeyMMBase

/// file_operations of a character device node.
package protocol CharDeviceOps: AnyObject {
    /// ->open: a new open file description `openID` of the node, by `task`.
    func open(_ kernel: Kernel, _ task: TaskStruct, openID: UInt64) -> Errno?
    /// ->release: the description's last reference went.
    func release(_ kernel: Kernel, openID: UInt64)
    /// ->get_unmapped_area (nil: the mm's default placement).
    func getUnmappedArea(_ kernel: Kernel, _ mm: MM, addr: VirtAddr, length: UInt64, pgoff: UInt64,
                         flags: MapFlags) -> Result<VirtAddr, Errno>?
    /// The checks of ->mmap, run before the range's old mappings are removed (so a refusal leaves
    /// them in place, as the kernel's aborted munmap does).
    func mmapCheck(_ kernel: Kernel, _ task: TaskStruct, openID: UInt64, start: VirtAddr, end: VirtAddr,
                   flags: VMFlags) -> Errno?
    /// ->mmap on a new VMA (not yet in the tree): sets its vm_ops and flags.
    func mmap(_ kernel: Kernel, _ task: TaskStruct, openID: UInt64, vma: VMA) -> Errno?
}

/// An open file description of a device node and its references.
package struct OpenDevice {
    package let file: MappedFile
    package var references: Int
}

extension Kernel {
    /// Registers a device node at `path` (devtmpfs: device 00:06, the inode number given).
    @discardableResult
    package func registerCharDevice(path: String, inode: UInt64, ops: CharDeviceOps) -> MappedFile {
        let f = MappedFile(path: path, inode: inode, device: Kernel.devtmpfsDevice, size: 0)
        f.charDevice = ops
        filesystem[path] = f
        return f
    }

    /// The device number of the file system holding /dev (devtmpfs on this development host: 00:06).
    package static let devtmpfsDevice: (major: UInt32, minor: UInt32) = (0, 6)

    /// fget() of a device description (no-op for regular files and anonymous memory).
    @inline(__always) func fileDescriptionGet(_ openID: UInt64) {
        guard openID != 0, !openDevices.isEmpty, openDevices[openID] != nil else { return }
        openDevices[openID]!.references += 1
    }

    /// fput() of a device description: the driver's ->release at the last reference.
    @inline(__always) func fileDescriptionPut(_ openID: UInt64) {
        guard openID != 0, !openDevices.isEmpty, let d = openDevices[openID] else { return }
        if d.references > 1 {
            openDevices[openID]!.references -= 1
            return
        }
        openDevices[openID] = nil
        d.file.charDevice?.release(self, openID: openID)
    }

    /// dup_fd(): the child's copy of a task's fd table (each device description gains a reference).
    func copyFiles(_ files: FileTable) -> FileTable {
        let t = files.copy()
        if !openDevices.isEmpty {
            for fd in t.fds.keys.sorted() { fileDescriptionGet(t.fds[fd]!.openID) }
        }
        return t
    }

    /// The device description an fd of `task` names, if it is one.
    package func openDevice(_ task: TaskStruct, fd: Int32) -> (openID: UInt64, device: OpenDevice)? {
        guard let of = task.files.fds[fd], let d = openDevices[of.openID] else { return nil }
        return (of.openID, d)
    }
}
