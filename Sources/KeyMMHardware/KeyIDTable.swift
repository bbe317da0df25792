// KeyIDTable: the MKTME key table as the OS programs it with PCONFIG (leaf MKTME_KEY_PROGRAM):
// SET_KEY_DIRECT, SET_KEY_RANDOM, CLEAR_KEY, NO_ENCRYPT, with PCONFIG's return codes. It also
// knows the TDX partition (the last `tdxKeyIDs` KeyIDs are TDX-private and not programmable by
// PCONFIG; the first of them is the TDX module's global KeyID, keyed by TDH.SYS.KEY.CONFIG).
//
// Invariants: one `program` is one PCONFIG broadcast to every package; either every package
// takes the new key or none does, so the tables are identical on every package. A failed
// command (real or injected) changes nothing. Random keys come from the seeded generator, so two
// machines with the same seed have the same keys. Key bytes are handed to the engine and never
// kept here; temporary copies are cleansed.
import CLibCrypto
import KeyMMBase

/// A PCONFIG MKTME_KEY_PROGRAM command. Its description never shows key material.
public enum PCONFIGCommand: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// KEYID_SET_KEY_DIRECT (0): software supplies the data key and the tweak key.
    case setKeyDirect(dataKey: [UInt8], tweakKey: [UInt8])
    /// KEYID_SET_KEY_RANDOM (1): the CPU generates both keys; software entropy is XORed in.
    case setKeyRandom(dataEntropy: [UInt8], tweakEntropy: [UInt8])
    /// KEYID_CLEAR_KEY (2): the KeyID goes back to the TME key.
    case clearKey
    /// KEYID_NO_ENCRYPT (3): the KeyID stores plaintext.
    case noEncrypt

    /// The command field of KEYID_CTRL.
    public var code: Int {
        switch self {
        case .setKeyDirect: 0
        case .setKeyRandom: 1
        case .clearKey: 2
        case .noEncrypt: 3
        }
    }

    public var description: String {
        switch self {
        case .setKeyDirect: "KEYID_SET_KEY_DIRECT"
        case .setKeyRandom: "KEYID_SET_KEY_RANDOM"
        case .clearKey: "KEYID_CLEAR_KEY"
        case .noEncrypt: "KEYID_NO_ENCRYPT"
        }
    }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .enum) }
}

/// PCONFIG's return codes (RAX).
public enum PCONFIGStatus: Int, Sendable, CustomStringConvertible {
    case success = 0, invalidProgCmd = 1, entropyError = 2, invalidKeyID = 3, invalidEncAlg = 4, deviceBusy = 5
    /// True for the statuses the series retried (device busy, insufficient entropy).
    public var isRetryable: Bool { self == .deviceBusy || self == .entropyError }
    public var description: String {
        switch self {
        case .success: "PROG_SUCCESS"
        case .invalidProgCmd: "INVALID_PROG_CMD"
        case .entropyError: "ENTROPY_ERROR"
        case .invalidKeyID: "INVALID_KEYID"
        case .invalidEncAlg: "INVALID_ENC_ALG"
        case .deviceBusy: "DEVICE_BUSY"
        }
    }
}

/// The programming state of a KeyID.
public enum KeyIDState: String, Sendable {
    /// Never programmed since boot (uses the TME key).
    case unprogrammed
    /// Holds an AES-XTS key (SET_KEY_DIRECT or SET_KEY_RANDOM; TDX KeyIDs keyed by the TDX module).
    case keyed
    /// CLEAR_KEY: back on the TME key, the old key destroyed.
    case cleared
    /// NO_ENCRYPT: plaintext.
    case noEncrypt
}

/// KEYID_CTRL encryption-algorithm field values (bits 23:8).
public enum PCONFIGAlgorithm {
    /// AES-XTS-128 (bit 8, as in the MKTME series).
    public static let aesXTS128: UInt32 = 1 << 8
    /// AES-XTS-256 (bit 10, mirroring IA32_TME_CAPABILITY bit 2): KeyMM's extension.
    public static let aesXTS256: UInt32 = 1 << 10
}

/// The KeyID table of every package.
public final class KeyIDTable {
    /// The machine's configuration (KeyID ranges, TDX partition, default algorithm).
    public let config: MachineConfig
    /// Physical packages (sockets); each executes every PCONFIG. Tables are identical on all of them.
    public var packages: Int = 1
    let engine: EncryptionEngine
    let clock: CostClock
    private var states: [KeyIDState]
    private var programs: [UInt64]
    private var injected: [PCONFIGStatus] = []
    private var injectedNext = 0
    private var rng: SeededGenerator

    /// Builds the table and keys the boot-time keys (TME key, SME key) from the seed.
    public init(config: MachineConfig, engine: EncryptionEngine, clock: CostClock) {
        self.config = config
        self.engine = engine
        self.clock = clock
        let slots = Int(config.maxKeyID) + 1
        states = Array(repeating: .unprogrammed, count: slots)
        programs = Array(repeating: 0, count: slots)
        rng = SeededGenerator.derived(seed: config.seed, purpose: 0x4B45_5953) // "KEYS"
        let keyBytes = config.xtsKeyBits / 8
        switch config.encryption {
        case .mktme:
            installRandom(KeyID.tme, keyBytes: keyBytes, dataEntropy: [], tweakEntropy: [])
            states[0] = .keyed
            // TDX KeyIDs, the global one included, stay unprogrammed until the TDX module keys
            // them (TDH.SYS.KEY.CONFIG, TDH.MNG.KEY.CONFIG: TDXModule.swift).
        case .sme:
            engine.setPlaintext(KeyID.tme)
            states[0] = .noEncrypt
            installRandom(KeyID(1), keyBytes: keyBytes, dataEntropy: [], tweakEntropy: [])
            states[1] = .keyed
        case .off:
            engine.setPlaintext(KeyID.tme)
            states[0] = .noEncrypt
        }
    }

    /// The algorithm field matching the configured `xtsKeyBits`.
    public var defaultAlgorithm: UInt32 { config.xtsKeyBits == 256 ? PCONFIGAlgorithm.aesXTS256 : PCONFIGAlgorithm.aesXTS128 }

    /// Executes one PCONFIG MKTME_KEY_PROGRAM on every package (no retry).
    public func program(_ keyid: KeyID, _ command: PCONFIGCommand) -> PCONFIGStatus {
        program(keyid, command, algorithm: defaultAlgorithm)
    }

    /// Executes one PCONFIG with an explicit KEYID_CTRL algorithm field.
    ///
    /// Checks, in order: an injected status; the KeyID is an MKTME KeyID (not 0, not TDX-private,
    /// within the table): else INVALID_KEYID; for key commands the algorithm is exactly one supported
    /// bit (else INVALID_ENC_ALG) and the keys are 16 (XTS-128) or 32 (XTS-256) bytes each (else
    /// INVALID_ENC_ALG); entropy at most 64 bytes each (else INVALID_PROG_CMD).
    public func program(_ keyid: KeyID, _ command: PCONFIGCommand, algorithm: UInt32) -> PCONFIGStatus {
        clock.charge(.pconfig, max(packages, 1))
        if injectedNext < injected.count {
            let s = injected[injectedNext]
            injectedNext += 1
            if injectedNext == injected.count { injected.removeAll(); injectedNext = 0 }
            if s != .success { return s }
        }
        guard let range = config.mktmeKeyIDs, range.contains(keyid.rawValue) else { return .invalidKeyID }
        let keyBytes: Int
        switch algorithm {
        case PCONFIGAlgorithm.aesXTS128: keyBytes = 16
        case PCONFIGAlgorithm.aesXTS256: keyBytes = 32
        default: keyBytes = 0
        }
        switch command {
        case let .setKeyDirect(dataKey, tweakKey):
            guard keyBytes != 0, dataKey.count == keyBytes, tweakKey.count == keyBytes else { return .invalidEncAlg }
            let ok = unsafe dataKey.withUnsafeBytes { d in unsafe tweakKey.withUnsafeBytes { t in unsafe engine.setKey(keyid, dataKey: d, tweakKey: t) } }
            guard ok else { return .invalidEncAlg }
            states[keyid.index] = .keyed
        case let .setKeyRandom(dataEntropy, tweakEntropy):
            guard keyBytes != 0 else { return .invalidEncAlg }
            guard dataEntropy.count <= 64, tweakEntropy.count <= 64 else { return .invalidProgCmd }
            guard installRandom(keyid, keyBytes: keyBytes, dataEntropy: dataEntropy, tweakEntropy: tweakEntropy) else { return .entropyError }
            states[keyid.index] = .keyed
        case .clearKey:
            engine.setTME(keyid)
            states[keyid.index] = .cleared
        case .noEncrypt:
            engine.setPlaintext(keyid)
            states[keyid.index] = .noEncrypt
        }
        programs[keyid.index] &+= 1
        return .success
    }

    /// The TDX module keys a TDX-private KeyID with a CPU-generated key (TDH.MNG.KEY.CONFIG), or clears it
    /// (TDH.MNG.KEY.FREEID). Returns INVALID_KEYID for a KeyID outside the TDX range.
    /// `packagesCharged` is the number of packages priced (default: every package); the TDX module
    /// programs one package per SEAMCALL and prices the others itself.
    public func programTDX(_ keyid: KeyID, clear: Bool = false, packagesCharged: Int? = nil) -> PCONFIGStatus {
        clock.charge(.pconfig, packagesCharged ?? max(packages, 1))
        guard isTDXPrivate(keyid) else { return .invalidKeyID }
        if clear {
            engine.setTME(keyid)
            states[keyid.index] = .cleared
        } else {
            guard installRandom(keyid, keyBytes: config.xtsKeyBits / 8, dataEntropy: [], tweakEntropy: []) else { return .entropyError }
            states[keyid.index] = .keyed
        }
        programs[keyid.index] &+= 1
        return .success
    }

    @discardableResult
    private func installRandom(_ keyid: KeyID, keyBytes: Int, dataEntropy: [UInt8], tweakEntropy: [UInt8]) -> Bool {
        let key = OwnedBuffer<UInt8>(zeroedCount: 2 * keyBytes)
        defer { unsafe OPENSSL_cleanse(key.raw(), key.byteCount) }
        let buf = unsafe UnsafeMutableRawBufferPointer(start: key.raw(), count: 2 * keyBytes)
        unsafe rng.fill(buf)
        for (i, b) in dataEntropy.prefix(keyBytes).enumerated() { key[i] ^= b }
        for (i, b) in tweakEntropy.prefix(keyBytes).enumerated() { key[keyBytes + i] ^= b }
        return unsafe engine.setKey(keyid, dataKey: UnsafeRawBufferPointer(start: key.raw(), count: keyBytes),
                                    tweakKey: UnsafeRawBufferPointer(start: key.raw(keyBytes), count: keyBytes))
    }

    /// The state of a KeyID (KeyIDs beyond the table read as unprogrammed).
    public func state(of keyid: KeyID) -> KeyIDState {
        keyid.index < states.count ? states[keyid.index] : .unprogrammed
    }

    /// Successful programs of a KeyID since boot.
    public func programCount(of keyid: KeyID) -> UInt64 {
        keyid.index < programs.count ? programs[keyid.index] : 0
    }

    /// True for TDX-private KeyIDs.
    public func isTDXPrivate(_ keyid: KeyID) -> Bool { config.tdxKeyIDRange?.contains(keyid.rawValue) ?? false }

    /// The TDX module's global KeyID (the first TDX-private KeyID), if any.
    public var tdxGlobalKeyID: KeyID? { config.tdxKeyIDRange.map { KeyID($0.lowerBound) } }

    /// KeyIDs the OS may program (nil when none).
    public var mktmeKeyIDs: ClosedRange<UInt16>? { config.mktmeKeyIDs }

    /// Queues statuses that the next PCONFIGs return instead of executing (`.success` lets that
    /// PCONFIG run normally). Deterministic fault injection for tests of the key service's retries.
    public func injectStatuses(_ statuses: [PCONFIGStatus]) {
        injected.append(contentsOf: statuses)
    }

    /// Injected statuses not yet consumed.
    public var pendingInjections: Int { injected.count - injectedNext }
}
