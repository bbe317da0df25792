// encrypt-anon: the MKTME series' kernel-build experiment ("all anonymous memory on KeyID-1",
// docs/sources.md, MKTME kernel-build experiment), as a boot option (`KernelConfig.encryptAnon`, setting
// `encrypt-anon=on`). At boot the kernel adds one "mktme" key (type=cpu, aes-xts-128) as root; its
// KeyID (the first free one, KeyID 1 on a fresh machine) becomes `encryptAnonKeyID`, and every new
// anonymous private VMA made by mmap or brk takes it (a per-VMA KeyID reference, as
// encrypt_mprotect would), so its pages are allocated, zeroed and written back through that KeyID.
// Shared anonymous (shmem) and file mappings stay on KeyID 0, as the series never encrypts them.
//
// Invariants: with the option off, or MKTME off (policy `none`), `encryptAnonKeyID` is KeyID 0 and
// nothing changes; the boot key holds its KeyID for the kernel's whole life (never revoked).
import KeyMMBase
import KeyMMKeys

extension Kernel {
    /// Adds the boot key when `config.encryptAnon` is on and MKTME is enabled.
    func setupEncryptAnon() {
        guard config.encryptAnon, keys.mktmeAvailable else { return }
        let r = keys.addKey(type: "mktme", description: "encrypt-anon", payload: "type=cpu algorithm=aes-xts-128",
                            keyring: .userKeyring, cred: .root, process: ProcessKeyrings(pid: 0))
        if case .success(let serial) = r, let k = keys.key(serial)?.keyid { encryptAnonKeyID = k }
    }

    /// The KeyID of a new mapping: `encryptAnonKeyID` for anonymous private ones, KeyID 0 otherwise.
    @inline(__always) func anonKeyID(file: MappedFile?, flags: VMFlags) -> KeyID {
        file == nil && !flags.contains(.shared) ? encryptAnonKeyID : .tme
    }
}
