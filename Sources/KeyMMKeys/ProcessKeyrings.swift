// ProcessKeyrings: which keyrings a process holds (the thread, process and session keyrings
// in its struct cred), and how fork, exec and exit change them.
//
// Simplification (docs/keys.md): a process is one thread, so the thread keyring is the
// process's. Linux semantics kept: fork gives the child no thread and no process keyring and
// shares the session keyring (copy_creds without CLONE_THREAD); exec drops the thread and the
// process keyring and keeps the session keyring; exit drops all three references. Keyrings are
// created on demand (add_key into KEY_SPEC_*; the session keyring is installed on first
// access). Per-UID keyrings belong to the user, not the process, and are pinned.
//
// Invariant: every serial a ProcessKeyringState names is a live keyring whose `processRefs`
// counts this process.

import KeyMMBase

/// A handle naming one process's keyrings inside a ``KeyService``: the pid the kernel uses.
public struct ProcessKeyrings: Hashable, Sendable, CustomStringConvertible {
    /// The process id.
    public let pid: Int32
    public init(pid: Int32) { self.pid = pid }
    public var description: String { "pid \(pid)" }
}

/// The keyrings a process's credentials hold (nil: none yet).
public struct ProcessKeyringState: Hashable, Sendable, Codable {
    public var thread: Int32?
    public var process: Int32?
    public var session: Int32?
}

extension KeyService {
    /// The keyrings `process` holds (all nil for a process the service has not seen).
    public func keyrings(of process: ProcessKeyrings) -> ProcessKeyringState {
        processes[process.pid] ?? ProcessKeyringState()
    }

    /// fork()/clone() without CLONE_THREAD: the child shares the parent's session keyring and has
    /// no thread or process keyring. Replaces whatever state `child` had.
    public func fork(parent: ProcessKeyrings, child: ProcessKeyrings) {
        exit(child)
        let session = processes[parent.pid]?.session
        if let session, let ring = keys[KeySerial(session)] { ring.processRefs += 1 }
        processes[child.pid] = ProcessKeyringState(thread: nil, process: nil, session: session)
    }

    /// execve(): the thread and process keyrings are dropped; the session keyring stays.
    public func exec(_ process: ProcessKeyrings) {
        guard var state = processes[process.pid] else { return }
        dropProcessRef(state.thread)
        dropProcessRef(state.process)
        state.thread = nil
        state.process = nil
        processes[process.pid] = state
        collectGarbage()
    }

    /// exit(): the process's references to its keyrings go; keyrings nothing else holds are
    /// destroyed, and with them keys only they linked.
    public func exit(_ process: ProcessKeyrings) {
        guard let state = processes.removeValue(forKey: process.pid) else { return }
        dropProcessRef(state.thread)
        dropProcessRef(state.process)
        dropProcessRef(state.session)
        collectGarbage()
    }

    private func dropProcessRef(_ serial: Int32?) {
        guard let serial, let ring = keys[KeySerial(serial)] else { return }
        ring.processRefs = max(0, ring.processRefs - 1)
    }
}
