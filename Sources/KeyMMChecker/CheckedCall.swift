// What the checker needs to know about one call beyond the kernel's state: where it came from
// (for reports), which process made it, the range it names, and for the memory calls the bytes
// written or read (the plaintext-provenance shadow is built from them).
//
// Invariant: a CheckedCall describes the call as the input wrote it; the checker never
// re-executes anything, it only reads the kernel and the hardware after (and, for mprotect,
// before) the call.
import KeyMMBase
import KeyMMKernel

/// The kind of a call, as far as the checker cares.
public enum CheckedCallKind: Sendable, Hashable {
    /// mprotect / pkey_mprotect: entries in the range must keep their KeyID.
    case protectionChange
    /// encrypt_mprotect: the range may change KeyID (its pages are zapped).
    case keyIDChange
    /// mmap: the new range is a fresh KeyID-0 VMA.
    case map
    /// mremap, execve, brk: the caller's address space may be rebuilt.
    case remap
    /// mem_write: the bytes written through the caller's mapping.
    case memWrite
    /// mem_read: the bytes the caller read.
    case memRead
    /// Anything else (munmap, madvise, mlock, fork, exit, keyctl, kernel threads, ...).
    case other
}

/// One call as the checker sees it.
public struct CheckedCall: Sendable {
    /// Where the call came from (file, line, text, index).
    public var site: CallSite
    public var kind: CheckedCallKind
    /// The calling process.
    public var pid: ProcessID
    /// The range the call names (mprotect family, encrypt_mprotect, mmap, mem_*), if any.
    public var address: VirtAddr?
    public var length: UInt64?
    /// mem_write's bytes.
    public var written: [UInt8]?

    public init(site: CallSite, kind: CheckedCallKind = .other, pid: ProcessID, address: VirtAddr? = nil,
                length: UInt64? = nil, written: [UInt8]? = nil) {
        self.site = site
        self.kind = kind
        self.pid = pid
        self.address = address
        self.length = length
        self.written = written
    }
}

/// How a call ended, as far as the checker cares.
public enum CheckedOutcome: Sendable {
    /// Succeeded; `value` is the returned number or address, when there is one.
    case success(value: UInt64?)
    /// mem_read's bytes.
    case bytes([UInt8])
    /// An errno, a signal, or no return.
    case failed
}
