// The key service's system calls as a process makes them (add_key(2), keyctl(2)): the task's
// credentials and its keyrings (ProcessKeyrings(pid:)), the syscall and keyring-lookup costs,
// and the modeled time the keyring garbage collector runs on.
//
// Modeled time (key_gc_delay): seconds = cost-clock cycles / the profile's TSC Hz, plus the time
// the processes slept (nanosleep / clock_nanosleep lines advance it without charging cycles, so
// the clock's "cycles = sum of charged events" invariant holds). Before every key operation the
// collector runs at that time, so a revoked key dies (and its KeyID is released if nothing else
// references it) at the first key operation 300 s after the revocation.
//
// Invariant: time never goes backwards (KeyService keeps the maximum).
import KeyMMBase
import KeyMMKeys

extension Kernel {
    /// Modeled wall-clock seconds since boot: cycles / TSC Hz + slept time.
    public var modeledSeconds: Double {
        let hz = machine.clock.profile.tscHz > 0 ? machine.clock.profile.tscHz : 3.0e9
        return Double(machine.clock.cycles) / hz + Double(mktme.sleptNanoseconds) / 1e9
    }

    /// Runs the keyring garbage collector at the current modeled time.
    public func keyServiceTick() {
        keys.collectGarbage(now: Int64(modeledSeconds.rounded(.down)))
    }

    /// The keyrings handle of a task.
    @inline(__always) func keyrings(_ task: TaskStruct) -> ProcessKeyrings { ProcessKeyrings(pid: task.pid.rawValue) }

    /// add_key(2) by process `pid`: its credentials, its keyrings. `requestedSerial` is the serial
    /// a trace recorded (honoured when free).
    public func addKey(_ pid: ProcessID, type: String, description: String?, payload: [UInt8]?,
                       keyring: KeySerial, requestedSerial: KeySerial? = nil) -> Result<KeySerial, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        keyServiceTick()
        machine.clock.charge(.keyLookup)
        return keys.addKey(type: type, description: description, payload: payload, keyring: keyring,
                           cred: task.cred, process: keyrings(task), requestedSerial: requestedSerial)
    }

    /// ``addKey(_:type:description:payload:keyring:requestedSerial:)`` with the payload as text
    /// (how mktme options are spelled).
    public func addKey(_ pid: ProcessID, type: String, description: String?, payload: String,
                       keyring: KeySerial, requestedSerial: KeySerial? = nil) -> Result<KeySerial, Errno> {
        addKey(pid, type: type, description: description, payload: Array(payload.utf8), keyring: keyring,
               requestedSerial: requestedSerial)
    }

    /// keyctl(2) by process `pid`: UPDATE, REVOKE, CHOWN, SETPERM, DESCRIBE, UNLINK, INVALIDATE
    /// (others EOPNOTSUPP). `arg3`/`arg4`: SETPERM's mask, CHOWN's uid and gid.
    public func keyctl(_ pid: ProcessID, _ op: Int32, _ id: KeySerial, keyring: KeySerial = 0,
                       payload: [UInt8]? = nil, arg3: UInt64 = 0, arg4: UInt64 = 0) -> Result<KeyctlResult, Errno> {
        machine.clock.charge(.syscall)
        guard let task = tasks[pid] else { return .failure(.ESRCH) }
        keyServiceTick()
        machine.clock.charge(.keyLookup)
        return keys.keyctl(op, id, keyring: keyring, payload: payload, arg3: arg3, arg4: arg4,
                           cred: task.cred, process: keyrings(task))
    }

    /// nanosleep(2) / clock_nanosleep(2): the process sleeps `seconds` + `nanoseconds`; modeled
    /// time advances (the keyring collector then runs). EINVAL for nanoseconds >= 10^9.
    public func nanosleep(_ pid: ProcessID, seconds: UInt64, nanoseconds: UInt64) -> Result<Void, Errno> {
        machine.clock.charge(.syscall)
        guard tasks[pid] != nil else { return .failure(.ESRCH) }
        guard nanoseconds < 1_000_000_000, seconds < UInt64(Int64.max) / 1_000_000_000 else { return .failure(.EINVAL) }
        let (total, o1) = (seconds &* 1_000_000_000).addingReportingOverflow(nanoseconds)
        let (after, o2) = mktme.sleptNanoseconds.addingReportingOverflow(total)
        mktme.sleptNanoseconds = (o1 || o2) ? UInt64.max / 2 : after
        keyServiceTick()
        return .success(())
    }
}

extension Kernel {
    /// fork/vfork/clone: the child's keyrings (copy_creds: the parent's session keyring, no
    /// thread or process keyring). Called by mm/Fork.swift.
    func keysFork(parent: ProcessID, child: ProcessID) {
        keys.fork(parent: ProcessKeyrings(pid: parent.rawValue), child: ProcessKeyrings(pid: child.rawValue))
    }

    /// execve: the thread and process keyrings go (exec_keys_install). Called by mm/Fork.swift.
    func keysExec(_ pid: ProcessID) {
        keys.exec(ProcessKeyrings(pid: pid.rawValue))
    }

    /// exit: the process's keyrings go (exit_creds); keys only they held die. Called by mm/Fork.swift.
    func keysExit(_ pid: ProcessID) {
        keys.exit(ProcessKeyrings(pid: pid.rawValue))
    }
}
