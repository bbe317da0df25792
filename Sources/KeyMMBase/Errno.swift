// The errno values a system call of the model can return, with Linux x86-64 numbers
// and the names and texts strace prints ("-1 ENOMEM (Cannot allocate memory)").
//
// Invariant: rawValue equals the Linux errno number, so results compare with real logs.

/// A Linux errno.
public enum Errno: Int32, Error, Sendable, CaseIterable {
    case EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EIO = 5, ENXIO = 6, E2BIG = 7,
         ENOEXEC = 8, EBADF = 9, ECHILD = 10, EAGAIN = 11, ENOMEM = 12, EACCES = 13,
         EFAULT = 14, EBUSY = 16, EEXIST = 17, EXDEV = 18, ENODEV = 19, ENOTDIR = 20,
         EISDIR = 21, EINVAL = 22, ENFILE = 23, EMFILE = 24, ENOTTY = 25, ETXTBSY = 26,
         EFBIG = 27, ENOSPC = 28, ESPIPE = 29, EROFS = 30, EMLINK = 31, EPIPE = 32,
         EDOM = 33, ERANGE = 34, EDEADLK = 35, ENAMETOOLONG = 36, ENOLCK = 37,
         ENOSYS = 38, ENOTEMPTY = 39, ELOOP = 40, ENOMSG = 42, ENODATA = 61,
         EOVERFLOW = 75, EOPNOTSUPP = 95, ENOKEY = 126, EKEYEXPIRED = 127,
         EKEYREVOKED = 128, EKEYREJECTED = 129, ERESTARTSYS = 512

    /// The name strace prints, e.g. "ENOMEM". (Errno must not conform to CustomStringConvertible:
    /// this relies on the default case-name printing; with the conformance it recursed forever.)
    public var name: String { String(describing: self) }
    public var description: String { name }

    /// strerror(3) text as glibc gives it (what strace prints in parentheses).
    public var message: String {
        switch self {
        case .EPERM: "Operation not permitted"
        case .ENOENT: "No such file or directory"
        case .ESRCH: "No such process"
        case .EINTR: "Interrupted system call"
        case .EIO: "Input/output error"
        case .ENXIO: "No such device or address"
        case .E2BIG: "Argument list too long"
        case .ENOEXEC: "Exec format error"
        case .EBADF: "Bad file descriptor"
        case .ECHILD: "No child processes"
        case .EAGAIN: "Resource temporarily unavailable"
        case .ENOMEM: "Cannot allocate memory"
        case .EACCES: "Permission denied"
        case .EFAULT: "Bad address"
        case .EBUSY: "Device or resource busy"
        case .EEXIST: "File exists"
        case .EXDEV: "Invalid cross-device link"
        case .ENODEV: "No such device"
        case .ENOTDIR: "Not a directory"
        case .EISDIR: "Is a directory"
        case .EINVAL: "Invalid argument"
        case .ENFILE: "Too many open files in system"
        case .EMFILE: "Too many open files"
        case .ENOTTY: "Inappropriate ioctl for device"
        case .ETXTBSY: "Text file busy"
        case .EFBIG: "File too large"
        case .ENOSPC: "No space left on device"
        case .ESPIPE: "Illegal seek"
        case .EROFS: "Read-only file system"
        case .EMLINK: "Too many links"
        case .EPIPE: "Broken pipe"
        case .EDOM: "Numerical argument out of domain"
        case .ERANGE: "Numerical result out of range"
        case .EDEADLK: "Resource deadlock avoided"
        case .ENAMETOOLONG: "File name too long"
        case .ENOLCK: "No locks available"
        case .ENOSYS: "Function not implemented"
        case .ENOTEMPTY: "Directory not empty"
        case .ELOOP: "Too many levels of symbolic links"
        case .ENOMSG: "No message of desired type"
        case .ENODATA: "No data available"
        case .EOVERFLOW: "Value too large for defined data type"
        case .EOPNOTSUPP: "Operation not supported"
        case .ENOKEY: "Required key not available"
        case .EKEYEXPIRED: "Key has expired"
        case .EKEYREVOKED: "Key has been revoked"
        case .EKEYREJECTED: "Key was rejected by service"
        case .ERESTARTSYS: "To be restarted"
        }
    }

    /// Looks an errno up by the name strace prints.
    public init?(name: String) {
        guard let e = Errno.allCases.first(where: { $0.name == name }) else { return nil }
        self = e
    }
}
