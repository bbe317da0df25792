// The seam between the key service and the KeyID table of the hardware: one PCONFIG
// MKTME_KEY_PROGRAM request per call, and the series' retry rule around it.
//
// Invariants: the key service never touches the hardware except through `KeyProgrammer`;
// a request holds key material only in `SecretBytes` that the caller zeroizes after the call;
// `deviceBusy` and `entropyError` are retried, at most `maxProgramAttempts` attempts in all,
// every other failure ends at once (mktme_program_all_keytables).

import KeyMMBase

/// A PCONFIG MKTME_KEY_PROGRAM request (struct mktme_key_program without the KeyID).
public enum KeyProgramCommand: CustomStringConvertible {
    /// SET_KEY_DIRECT (0): the given data key and tweak key (16 bytes each for AES-XTS-128).
    case setKeyDirect(dataKey: SecretBytes, tweakKey: SecretBytes)
    /// SET_KEY_RANDOM (1): a CPU-generated key; the entropy fields are XORed in by the CPU.
    case setKeyRandom(dataEntropy: SecretBytes, tweakEntropy: SecretBytes)
    /// CLEAR_KEY (2): the KeyID uses the TME key again.
    case clearKey
    /// NO_ENCRYPT (3): the KeyID stores plaintext.
    case noEncrypt

    /// The command without its key fields.
    public var kind: KeyProgramKind {
        switch self {
        case .setKeyDirect: .setKeyDirect
        case .setKeyRandom: .setKeyRandom
        case .clearKey: .clearKey
        case .noEncrypt: .noEncrypt
        }
    }

    public var description: String { kind.description }
}

/// The PCONFIG key-program command code, without key material.
public enum KeyProgramKind: Int, Sendable, Hashable, Codable, CustomStringConvertible {
    case setKeyDirect = 0, setKeyRandom = 1, clearKey = 2, noEncrypt = 3
    public var description: String {
        switch self {
        case .setKeyDirect: "SET_KEY_DIRECT"
        case .setKeyRandom: "SET_KEY_RANDOM"
        case .clearKey: "CLEAR_KEY"
        case .noEncrypt: "NO_ENCRYPT"
        }
    }
}

/// PCONFIG's MKTME_KEY_PROGRAM return codes.
public enum KeyProgramStatus: Int, Sendable, Hashable, Codable, CustomStringConvertible {
    case success = 0, invalidProgCmd = 1, entropyError = 2, invalidKeyID = 3, invalidEncAlg = 4, deviceBusy = 5

    /// Whether the series retries this status ("Insufficient entropy", "Failure to access key table").
    public var isRetried: Bool { self == .entropyError || self == .deviceBusy }

    /// The series' message for the status (mktme_error[]).
    public var description: String {
        switch self {
        case .success: "KeyID was successfully programmed"
        case .invalidProgCmd: "Invalid KeyID programming command"
        case .entropyError: "Insufficient entropy"
        case .invalidKeyID: "KeyID not valid"
        case .invalidEncAlg: "Invalid encryption algorithm chosen"
        case .deviceBusy: "Failure to access key table"
        }
    }
}

/// Anything that executes PCONFIG key programming: the hardware's KeyID table, or a test fake.
public protocol KeyProgrammer: AnyObject {
    /// Programs `keyid` on every package; returns PCONFIG's status. Must not keep references to
    /// the command's `SecretBytes` (copy what the hardware needs).
    func programKeyID(_ keyid: KeyID, _ command: KeyProgramCommand) -> KeyProgramStatus
}

/// Attempts per programming request: the series' `retries = 10`.
public let maxProgramAttempts = 10
