// Shared helpers for the key-service tests: a scriptable fake PCONFIG and a service factory, and
// the checks the oracle-backed suites' `.enabled(if:)` traits use.
import Foundation
import KeyMMBase
@_spi(Testing) import KeyMMKeys

/// A PCONFIG stand-in: returns scripted statuses first (then success) and records every call.
final class FakeProgrammer: KeyProgrammer {
    var script: [KeyProgramStatus] = []
    /// When false, `fields` stays empty (so dumping a service shows no material held by the fake).
    var recordFields = true
    private(set) var calls: [(keyid: KeyID, kind: KeyProgramKind)] = []
    /// What SET_KEY_DIRECT / SET_KEY_RANDOM received, per call (for tests of what reaches the
    /// hardware; a real table never keeps these).
    private(set) var fields: [(data: [UInt8], tweak: [UInt8])] = []

    func programKeyID(_ keyid: KeyID, _ command: KeyProgramCommand) -> KeyProgramStatus {
        calls.append((keyid, command.kind))
        switch command {
        case .setKeyDirect(let d, let t) where recordFields, .setKeyRandom(let d, let t) where recordFields:
            fields.append((d.withUnsafeBytes { Array($0) }, t.withUnsafeBytes { Array($0) }))
        default:
            fields.append(([], []))
        }
        if !script.isEmpty { return script.removeFirst() }
        return .success
    }

    func kinds(_ keyid: KeyID) -> [KeyProgramKind] { calls.filter { $0.keyid == keyid }.map(\.kind) }
}

let root = Credentials.root
let p1 = ProcessKeyrings(pid: 1)
let userHex = "0123456789abcdef0123456789abcdef"
let tweakHex = "fedcba9876543210fedcba9876543210"
let userOptions = "type=user algorithm=aes-xts-128 key=\(userHex) tweak=\(tweakHex)"

func makeService(keyids: ClosedRange<UInt16>? = 1...63, userKeys: Bool = true, seed: UInt64 = 1) -> (KeyService, FakeProgrammer) {
    let fake = FakeProgrammer()
    let service = KeyService(programmer: fake, keyids: keyids, userKeysEnabled: userKeys, seed: seed)
    return (service, fake)
}

extension KeyService {
    /// add_key("mktme", desc, options, KEY_SPEC_PROCESS_KEYRING) as root in process 1.
    func addMKTME(_ desc: String, _ options: String, cred: Credentials = root, process: ProcessKeyrings = p1) -> Result<KeySerial, Errno> {
        addKey(type: "mktme", description: desc, payload: options, keyring: .processKeyring, cred: cred, process: process)
    }
}

extension Result {
    var error: Failure? { if case .failure(let e) = self { return e }; return nil }
    var value: Success? { if case .success(let v) = self { return v }; return nil }
}

/// What the oracle-backed tests need from the host (each checked once).
enum HostOracles {
    /// An executable `name` on PATH.
    static func onPath(_ name: String) -> Bool {
        (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").contains {
            FileManager.default.isExecutableFile(atPath: "\($0)/\(name)")
        }
    }

    /// python3 imports `cryptography`'s ciphers.
    static let pythonCryptography: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "from cryptography.hazmat.primitives.ciphers import Cipher"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }()
}
