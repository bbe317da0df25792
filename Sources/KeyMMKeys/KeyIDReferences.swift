// KeyIDReferences: the series' KeyID bookkeeping: the 1:1 map from mktme keys to hardware
// KeyIDs (mktme_map) and one reference count per KeyID (encrypt_count[], a percpu_ref).
//
// Lifetime of a KeyID (docs/sources.md, seed 000): free -> reserved (instantiate picks the lowest free KeyID)
// -> programmed -> in use, count 1 (the key's own reference, percpu_ref_init) -> +1 per VMA
// (mmap, vm_area_dup, encrypt_mprotect) and +2^order per page (prep_encrypted_page) -> the key
// is destroyed: dead, the key's reference dropped (percpu_ref_kill) -> the count reaches 0:
// release: `beforeClearKey` (the kernel's cache write-back, see mktme/KeyIDRelease.swift),
// reprogram with CLEAR_KEY, free. So a KeyID outlives its key while VMAs or pages (e.g. pinned
// by get_user_pages) still use it.
//
// Invariants: a slot is reprogrammed only while no reference other than its own key's exists
// (`KeyIDEvent.programmed.otherReferences == 0`); a free slot with a non-zero count (a get on a
// free KeyID: a bug elsewhere) is never handed out; imbalances never crash: they are recorded in
// `anomalies` and the count is clamped (0 for a dead or free KeyID, 1 for a live key's).
// KeyID 0 (the TME key) is not counted: get/put on it are no-ops, as in the series.

import KeyMMBase

/// The state of one KeyID slot.
public enum KeyIDSlotState: Hashable, Sendable, CustomStringConvertible {
    /// Not mapped to a key; may be handed out.
    case free
    /// Picked for a key being instantiated; programming in progress.
    case reserved(KeySerial)
    /// Mapped to a live key.
    case inUse(KeySerial)
    /// Its key was destroyed; waiting for the last reference to go.
    case dead(KeySerial)

    /// "free", "reserved", "in-use", "dead".
    public var name: String {
        switch self {
        case .free: "free"
        case .reserved: "reserved"
        case .inUse: "in-use"
        case .dead: "dead"
        }
    }

    /// The key the slot belongs (or belonged) to.
    public var serial: KeySerial? {
        switch self {
        case .free: nil
        case .reserved(let s), .inUse(let s), .dead(let s): s
        }
    }

    public var description: String {
        if let serial { return "\(name) (key \(serial.rawValue))" }
        return name
    }
}

/// A reference-count imbalance or misuse, recorded instead of crashing.
public struct KeyIDAnomaly: Hashable, Sendable, Codable, CustomStringConvertible {
    public enum Kind: String, Hashable, Sendable, Codable {
        /// A put took the count below zero (dead or free KeyID).
        case putBelowZero = "put-below-zero"
        /// A put would have dropped a live key's own reference.
        case liveKeyReferenceDropped = "live-key-reference-dropped"
        /// A get on a KeyID no key owns (use after release).
        case getOnFreeKeyID = "get-on-free-keyid"
        /// get/put on a KeyID outside the MKTME range.
        case outOfRange = "out-of-range"
        /// Reprogramming a released KeyID with CLEAR_KEY failed.
        case clearKeyFailed = "clear-key-failed"
    }
    public var kind: Kind
    public var keyid: UInt16
    /// Count before the operation.
    public var countBefore: Int
    /// The operation's amount (n of get/put), 0 if not applicable.
    public var amount: Int
    public var description: String {
        "\(kind.rawValue): KeyID \(keyid) count \(countBefore) n \(amount)"
    }
}

/// Something that happened to a KeyID (for invariant checkers and traces).
public enum KeyIDEvent: Hashable, Sendable {
    /// Instantiate picked this KeyID for the key.
    case reserved(KeyID, KeySerial)
    /// A programming request finished (after `attempts` tries). `otherReferences` is the count
    /// minus the key's own reference at that moment; it must be 0.
    case programmed(KeyID, KeyProgramKind, KeyProgramStatus, attempts: Int, otherReferences: Int)
    /// Programming failed at instantiate: the reservation is dropped.
    case reservationCancelled(KeyID)
    /// The key's own reference was taken (percpu_ref_init): in use, count 1.
    case instantiated(KeyID, KeySerial)
    /// `get(keyid, n)`; `count` is the count after.
    case get(KeyID, Int, count: Int)
    /// `put(keyid, n)`; `count` is the count after.
    case put(KeyID, Int, count: Int)
    /// The key was destroyed: the KeyID is dead and the key's reference dropped (`count` after).
    case killed(KeyID, KeySerial, count: Int)
    /// The count reached zero after the key died: CLEAR_KEY was programmed and the slot is free.
    case released(KeyID)
    /// An imbalance was recorded.
    case anomaly(KeyIDAnomaly)
}

/// Inspection record of one KeyID slot (JSON and checkers).
public struct KeyIDSlotInfo: Hashable, Sendable, Codable {
    public var keyid: UInt16
    /// "free", "reserved", "in-use" or "dead".
    public var state: String
    /// The owning (or last owning) key's serial.
    public var serial: Int32?
    /// The reference count.
    public var count: Int
    /// Successful PCONFIG programmings of this KeyID so far.
    public var programCount: Int
    /// The last command programmed ("SET_KEY_RANDOM", ...), nil if never programmed.
    public var lastProgram: String?
}

/// The per-KeyID reference counts and the key <-> KeyID map.
public final class KeyIDReferences {
    /// The MKTME KeyIDs keys may use (TDX-private KeyIDs are never in it); nil: none.
    public let range: ClosedRange<UInt16>?
    let programmer: any KeyProgrammer
    // Hot path (get/put per page): flat pointers held in `let`s, so no dynamic exclusivity
    // checks or copy-on-write checks per call. `tags` mirrors `states`: 0 free, 1 reserved,
    // 2 in use, 3 dead. `observed` mirrors `onKeyIDEvent != nil`.
    private let counts: UnsafeMutablePointer<Int>
    private let tags: UnsafeMutablePointer<UInt8>
    private let observed: UnsafeMutablePointer<Bool>
    private let lo: Int, hi: Int
    private var states: [KeyIDSlotState]
    private var programCounts: [Int]
    private var lastProgram: [KeyProgramKind?]
    /// Every imbalance seen so far, in order.
    public private(set) var anomalies: [KeyIDAnomaly] = []
    /// Called for every ``KeyIDEvent`` (nil: no events are built).
    public var onKeyIDEvent: ((KeyIDEvent) -> Void)? {
        didSet { observed.pointee = onKeyIDEvent != nil }
    }
    /// Run when a KeyID's count reached zero after its key died, before CLEAR_KEY reprograms it
    /// (the release work item): what must leave the cache before the KeyID can name another key.
    /// The kernel installs a WBINVD here under the lazy allocator policies (freed pages keep the
    /// KeyID and may keep dirty lines under it); nil: nothing.
    public var beforeClearKey: ((KeyID) -> Void)?

    /// Slots for the KeyIDs in `range`, all free; `programmer` executes PCONFIG.
    public init(range: ClosedRange<UInt16>?, programmer: any KeyProgrammer) {
        self.range = range
        self.programmer = programmer
        let size = Int(range?.upperBound ?? 0) + 1
        lo = Int(range?.lowerBound ?? 1)
        hi = Int(range?.upperBound ?? 0)
        counts = .allocate(capacity: size)
        counts.initialize(repeating: 0, count: size)
        tags = .allocate(capacity: size)
        tags.initialize(repeating: 0, count: size)
        observed = .allocate(capacity: 1)
        observed.initialize(to: false)
        states = Array(repeating: .free, count: size)
        programCounts = Array(repeating: 0, count: size)
        lastProgram = Array(repeating: nil, count: size)
    }

    deinit {
        counts.deallocate()
        tags.deallocate()
        observed.deallocate()
    }

    @inline(__always) private func slot(_ keyid: KeyID) -> Int? {
        let i = keyid.index
        return i >= lo && i <= hi ? i : nil
    }

    private func setState(_ i: Int, _ state: KeyIDSlotState) {
        states[i] = state
        switch state {
        case .free: tags[i] = 0
        case .reserved: tags[i] = 1
        case .inUse: tags[i] = 2
        case .dead: tags[i] = 3
        }
    }

    private func record(_ kind: KeyIDAnomaly.Kind, _ keyid: KeyID, before: Int, amount: Int) {
        let a = KeyIDAnomaly(kind: kind, keyid: keyid.rawValue, countBefore: before, amount: amount)
        anomalies.append(a)
        onKeyIDEvent?(.anomaly(a))
    }

    // MARK: references (the kernel's calls)

    /// Takes `n` references on `keyid` (percpu_ref_get_many): one per VMA, 2^order per page.
    public func get(_ keyid: KeyID, _ n: Int = 1) {
        let i = keyid.index
        if i >= lo, i <= hi, tags[i] >= 2, n > 0, !observed.pointee {
            counts[i] &+= n
            return
        }
        slowGet(keyid, n)
    }

    private func slowGet(_ keyid: KeyID, _ n: Int) {
        guard keyid.rawValue != 0, n != 0 else { return }
        guard let i = slot(keyid) else { return record(.outOfRange, keyid, before: 0, amount: n) }
        let before = counts[i]
        if tags[i] < 2 { record(.getOnFreeKeyID, keyid, before: before, amount: n) }
        counts[i] = before &+ n
        onKeyIDEvent?(.get(keyid, n, count: counts[i]))
    }

    /// Drops `n` references on `keyid` (percpu_ref_put_many). When the count of a dead KeyID
    /// reaches zero the KeyID is released: reprogrammed with CLEAR_KEY and freed.
    public func put(_ keyid: KeyID, _ n: Int = 1) {
        let i = keyid.index
        if i >= lo, i <= hi, n > 0, !observed.pointee {
            let after = counts[i] &- n
            // In use: the key's own reference must stay; dead: the last put releases (slow path).
            if (tags[i] == 2 && after >= 1) || (tags[i] == 3 && after > 0) {
                counts[i] = after
                return
            }
        }
        slowPut(keyid, n)
    }

    private func slowPut(_ keyid: KeyID, _ n: Int) {
        guard keyid.rawValue != 0, n != 0 else { return }
        guard let i = slot(keyid) else { return record(.outOfRange, keyid, before: 0, amount: n) }
        let before = counts[i]
        var after = before &- n
        if tags[i] == 2, after < 1 {
            record(.liveKeyReferenceDropped, keyid, before: before, amount: n)
            after = 1
        } else if after < 0 {
            record(.putBelowZero, keyid, before: before, amount: n)
            after = 0
        }
        counts[i] = after
        onKeyIDEvent?(.put(keyid, n, count: after))
        if after == 0, tags[i] == 3 { release(keyid) }
    }

    /// The current reference count of `keyid` (0 for KeyID 0 and KeyIDs outside the range).
    public func count(_ keyid: KeyID) -> Int {
        slot(keyid).map { counts[$0] } ?? 0
    }

    /// The state of `keyid` (`.free` for KeyIDs outside the range).
    public func state(_ keyid: KeyID) -> KeyIDSlotState {
        slot(keyid).map { states[$0] } ?? .free
    }

    /// Successful programmings of `keyid` so far.
    public func programCount(_ keyid: KeyID) -> Int {
        slot(keyid).map { programCounts[$0] } ?? 0
    }

    /// KeyIDs that are free and unreferenced (what a new key can get).
    public var freeCount: Int {
        guard let range else { return 0 }
        return range.reduce(0) { n, k in
            let i = Int(k)
            if tags[i] == 0, counts[i] == 0 { return n + 1 }
            return n
        }
    }

    /// One record per KeyID of the range, in KeyID order.
    public var slots: [KeyIDSlotInfo] {
        guard let range else { return [] }
        return range.map { k in
            let i = Int(k)
            return KeyIDSlotInfo(keyid: k, state: states[i].name, serial: states[i].serial?.rawValue,
                                 count: counts[i], programCount: programCounts[i],
                                 lastProgram: lastProgram[i]?.description)
        }
    }

    // MARK: the key type's side (mktme_reserve_keyid, percpu_ref_init/kill, release)

    /// mktme_reserve_keyid(): the lowest free, unreferenced KeyID, now reserved for `serial`.
    func reserve(for serial: KeySerial) -> KeyID? {
        guard let range else { return nil }
        for k in range {
            let i = Int(k)
            if tags[i] == 0, counts[i] == 0 {
                setState(i, .reserved(serial))
                onKeyIDEvent?(.reserved(KeyID(k), serial))
                return KeyID(k)
            }
        }
        return nil
    }

    /// Programming failed during instantiate: give the reservation back (no CLEAR needed: the
    /// KeyID was never usable).
    func cancelReservation(_ keyid: KeyID) {
        guard let i = slot(keyid), case .reserved = states[i] else { return }
        setState(i, .free)
        onKeyIDEvent?(.reservationCancelled(keyid))
    }

    /// percpu_ref_init(): the key's own reference; the KeyID is in use by `serial`.
    func activate(_ keyid: KeyID, for serial: KeySerial) {
        guard let i = slot(keyid) else { return }
        setState(i, .inUse(serial))
        counts[i] &+= 1
        onKeyIDEvent?(.instantiated(keyid, serial))
    }

    /// The key type's destroy: mark the slot dead and drop the key's reference (percpu_ref_kill).
    func kill(_ keyid: KeyID) {
        guard let i = slot(keyid), case .inUse(let serial) = states[i] else { return }
        setState(i, .dead(serial))
        let before = counts[i]
        if before < 1 {
            record(.putBelowZero, keyid, before: before, amount: 1)
            counts[i] = 0
        } else {
            counts[i] = before - 1
        }
        onKeyIDEvent?(.killed(keyid, serial, count: counts[i]))
        if counts[i] == 0 { release(keyid) }
    }

    /// The percpu_ref release callback: `beforeClearKey` (cache write-back), CLEAR_KEY, then
    /// the slot is free.
    private func release(_ keyid: KeyID) {
        guard let i = slot(keyid) else { return }
        beforeClearKey?(keyid)
        let status = program(keyid, .clearKey)
        if status != .success { record(.clearKeyFailed, keyid, before: counts[i], amount: 0) }
        setState(i, .free)
        onKeyIDEvent?(.released(keyid))
    }

    /// mktme_program_keyid(): one request, retried on busy/entropy errors up to
    /// ``maxProgramAttempts`` attempts. Returns the final status.
    func program(_ keyid: KeyID, _ command: KeyProgramCommand) -> KeyProgramStatus {
        var attempts = 0
        var status = KeyProgramStatus.success
        repeat {
            attempts += 1
            status = programmer.programKeyID(keyid, command)
        } while status.isRetried && attempts < maxProgramAttempts
        if let i = slot(keyid) {
            if status == .success {
                programCounts[i] += 1
                lastProgram[i] = command.kind
            }
            if let onKeyIDEvent {
                let own: Int
                if case .inUse = states[i] { own = 1 } else { own = 0 }
                onKeyIDEvent(.programmed(keyid, command.kind, status, attempts: attempts, otherReferences: counts[i] - own))
            }
        }
        return status
    }
}
