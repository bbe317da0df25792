// The SGX lines of a scenario (the contract's "SGX enclaves" section): ioctl(2) on /dev/sgx_enclave
// with the SECS and SECINFO written inline as structures, and the model-only enclave_read,
// enclave_write, sgx_mm_list, sgx_epc_free, sgx_reclaim, sgx_walk_begin/end and sgx_tamper.
//
// Owns: decoding the ioctl structures field by field (every unknown or missing field is a located
// error naming the accepted ones) and the rule that an ioctl the model does not model (another
// file's TCGETS in a real log) is counted as not modeled, never guessed.
//
// Invariant: an SGX request on any fd is executed (EBADF/ENOTTY as the kernel answers); a request
// that is not an SGX one on an fd that is not /dev/sgx_enclave is not modeled.
import KeyMMBase
import KeyMMHardware
import KeyMMKernel
import KeyMMTrace

extension SyscallDispatcher {
    mutating func executeSGX(_ call: ModeledCall, a: inout Arguments, line: SyscallLine,
                             task: TaskStruct, kernel: Kernel) throws(TraceError) -> CallOutcome? {
        let recordedValue = line.result.errnoName == nil ? line.result.int64Value : nil
        switch call {
        case .ioctl:
            return try ioctl(&a, line: line, task: task, kernel: kernel)
        case .enclave_write:
            let bytes = try a.bytes(1)
            switch kernel.enclaveWrite(task, VirtAddr(try a.u64(0)), bytes) {
            case .ok(let n): return .value(Int64(n))
            case .signal(let s): return .signal(Self.name(s))
            }
        case .enclave_read:
            let length = try a.u64(1)
            guard length <= 1 << 24 else {
                throw TraceError(location: line.location(ofArgument: 1), message: "enclave_read of \(length) bytes: at most 16 MiB per call")
            }
            switch kernel.enclaveRead(task, VirtAddr(try a.u64(0)), Int(length)) {
            case .ok(let b): return .bytes(b)
            case .signal(let s): return .signal(Self.name(s))
            }
        case .sgx_mm_list:
            return Self.outcome(kernel.sgxMMListCount(task, fd: try a.i32(0)))
        case .sgx_epc_free:
            return .value(Int64(kernel.sgxEPCFree()))
        case .sgx_reclaim:
            let n = try a.i64(0)
            guard n >= 0, n <= 1 << 24 else {
                throw TraceError(location: line.location(ofArgument: 0), message: "sgx_reclaim of \(n) pages: NPAGES is 0 ... 16777216")
            }
            return .value(Int64(kernel.sgxReclaim(Int(n))))
        case .sgx_walk_begin:
            let want = recordedValue.flatMap { $0 > 0 && $0 <= Int64(Int32.max) ? Int32($0) : nil }
            return Self.outcome(kernel.sgxWalkBegin(task, fd: try a.i32(0), handle: want).map { Int64($0) })
        case .sgx_walk_end:
            return Self.outcome(kernel.sgxWalkEnd(try a.i32(0)))
        case .sgx_tamper:
            let mode: SGXTamper
            switch try a.u64(2, [.sgxTamper]) {
            case 1: mode = .flip
            case 2: mode = .replay
            default:
                throw TraceError(location: line.location(ofArgument: 2), message: "sgx_tamper(FD, OFFSET, MODE): MODE is SGX_TAMPER_FLIP or SGX_TAMPER_REPLAY")
            }
            return Self.outcome(kernel.sgxTamper(task, fd: try a.i32(0), offset: try a.u64(1), mode))
        default:
            return nil
        }
    }

    /// ioctl(FD, REQUEST, ARG).
    private func ioctl(_ a: inout Arguments, line: SyscallLine, task: TaskStruct, kernel: Kernel) throws(TraceError) -> CallOutcome? {
        // Another driver's ioctl (a real log's TCGETS, perf's named arguments): not modeled, and
        // nothing about it is an input error.
        guard a.count >= 2, let fd = try? a.i32(0) else { return nil }
        let requestArg = try a.arg(1)
        if case .named = requestArg.value { return nil }
        let isEnclaveFd: Bool = {
            guard let of = task.files.fds[fd], let d = kernel.sgx else { return false }
            return of.file.charDevice === d
        }()
        // The request: an SGX_IOC_* name or a number. Anything else is another driver's ioctl.
        let request: UInt64
        if case .symbol(let s) = requestArg.value.unnamed, !s.hasPrefix("SGX_IOC_") {
            guard isEnclaveFd else { return nil }
            throw TraceError(location: requestArg.location, message: "argument 2 of ioctl: unknown request \(s) for /dev/sgx_enclave; accepted: SGX_IOC_ENCLAVE_CREATE, SGX_IOC_ENCLAVE_ADD_PAGES, SGX_IOC_ENCLAVE_INIT, SGX_IOC_ENCLAVE_PROVISION or a number")
        }
        request = try requestArg.asUInt64([.sgxIoctl])
        let known: Set<UInt64> = [SGXIoctlRequest.createNumber, SGXIoctlRequest.addPagesNumber, SGXIoctlRequest.initNumber,
                                  SGXIoctlRequest.provisionNumber, SGXIoctlRequest.vepcRemoveAllNumber,
                                  SGXIoctlRequest.restrictPermissionsNumber, SGXIoctlRequest.modifyTypesNumber,
                                  SGXIoctlRequest.removePagesNumber]
        guard isEnclaveFd || known.contains(request) else { return nil }
        let r: SGXIoctlRequest
        switch request {
        case SGXIoctlRequest.createNumber:
            let s = try Fields(try a.arg(2), what: "SGX_IOC_ENCLAVE_CREATE's SECS",
                               accepted: ["size", "base", "attributes", "ssa_frame_size", "xfrm", "miscselect", "src"],
                               required: ["size", "base"])
            r = .create(size: try s.u64("size"), base: try s.u64("base"), attributes: try s.u64("attributes", [.sgxAttribute]) )
        case SGXIoctlRequest.addPagesNumber:
            let s = try Fields(try a.arg(2), what: "SGX_IOC_ENCLAVE_ADD_PAGES's struct sgx_enclave_add_pages",
                               accepted: ["offset", "length", "secinfo", "flags", "src", "count"],
                               required: ["offset", "length", "secinfo"])
            r = .addPages(src: s.has("src") ? VirtAddr(try s.u64("src")) : nil, offset: try s.u64("offset"),
                          length: try s.u64("length"), secinfo: try s.u64("secinfo", [.sgxSecinfo]),
                          flags: try s.u64("flags", [.sgxPageFlags]))
        case SGXIoctlRequest.initNumber:
            if a.count > 2 {
                _ = try Fields(try a.arg(2), what: "SGX_IOC_ENCLAVE_INIT's struct sgx_enclave_init",
                               accepted: ["sigstruct"], required: [])
            }
            r = .initialize
        case SGXIoctlRequest.provisionNumber:
            r = .provision(fd: a.count > 2 ? try Fields(try a.arg(2), what: "SGX_IOC_ENCLAVE_PROVISION's struct", accepted: ["fd"], required: []).u64("fd") : 0)
        case SGXIoctlRequest.restrictPermissionsNumber, SGXIoctlRequest.modifyTypesNumber, SGXIoctlRequest.removePagesNumber:
            r = .sgx2
        default:
            r = .other(request)
        }
        return Self.outcome(kernel.sgxIoctl(task, fd: fd, r))
    }
}

/// The `name=value` fields of a structure argument, checked against the accepted names.
private struct Fields {
    let arg: TraceArgument
    var names: Set<String> = []

    init(_ arg: TraceArgument, what: String, accepted: [String], required: [String]) throws(TraceError) {
        self.arg = arg
        guard case .structure(let fields, _) = arg.value.unnamed else {
            throw TraceError(location: arg.location, message: "\(what) is written as a {structure}: {\(accepted.map { "\($0)=..." }.joined(separator: ", "))}")
        }
        for f in fields {
            switch f {
            case .named(let n, _):
                guard accepted.contains(n) else {
                    throw TraceError(location: arg.location, message: "unknown field \(n) in \(what); accepted fields: \(accepted.joined(separator: ", "))")
                }
                names.insert(n)
            case .elided:
                continue
            default:
                throw TraceError(location: arg.location, message: "\(what): every field is name=value; accepted fields: \(accepted.joined(separator: ", "))")
            }
        }
        for r in required where !names.contains(r) {
            throw TraceError(location: arg.location, message: "\(what) needs the field \(r) (required: \(required.joined(separator: ", ")))")
        }
    }

    func has(_ name: String) -> Bool { names.contains(name) }

    /// The field's value (0 when absent).
    func u64(_ name: String, _ families: [TraceConstantFamily] = []) throws(TraceError) -> UInt64 {
        guard names.contains(name) else { return 0 }
        return try arg.field(name).asUInt64(families)
    }
}
