// encrypt_mprotect (docs/sources.md, seed 002) beyond what scenario files can show: EACCES for a caller without
// view permission, the VMA-level effects (KeyID in vm_page_prot, anon_vma unlinked, merges),
// the smaps KeyID line, the pkey kept by NO_KEY, policy=none and user-keys=off.
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

@Suite struct MKTMEEncryptMprotectTests {
    let base: UInt64 = 0x7f00_0000_0000

    @Test func lookupErrorsComeInTheSeriesOrder() throws {
        let (k, t) = try makeMKTMEKernel()
        let key = k.mktmeKey("a")
        k.anonMap(base, 4096)
        // len first, even for an unknown pid's keys (serial 0 would be EINVAL from lookup too).
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 1, prot: rw, serial: KeySerial(12345)) == .failure(.EINVAL))
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: KeySerial(12345)) == .failure(.ENOKEY))
        // Another uid, not possessing the key: the mktme key grants nothing to "other": EACCES.
        let other = k.spawn(pid: ProcessID(50), cred: Credentials(uid: 1000, gid: 1000, capabilities: []))
        k.anonMap(base, 4096, pid: other.pid)
        #expect(k.encryptMprotect(other.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: key) == .failure(.EACCES))
        // Without CAP_SYS_RESOURCE/CAP_SYS_ADMIN no mktme key can be created: EACCES.
        #expect(k.addKey(other.pid, type: "mktme", description: "x", payload: "type=cpu algorithm=aes-xts-128",
                         keyring: .processKeyring).map { _ in 0 } == .failure(.EACCES))
        // A bad special id is EINVAL from the lookup.
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: KeySerial(-6)) == .failure(.EINVAL))
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: key) == .success(()))
    }

    @Test func keyIDChangeZapsUnlinksAnonVMAAndLivesInVMPageProt() throws {
        let (k, t) = try makeMKTMEKernel()
        let key = k.mktmeKey("a")
        let id = k.keyid(of: key)
        k.anonMap(base, 2 * 4096)
        k.write(t, base, "old")
        let vma = try #require(t.mm.vma(containing: VirtAddr(base)))
        #expect(vma.anonVMA != nil)
        let oldFrame = try #require(k.frame(t, base))
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 2 * 4096, prot: rw, serial: key) == .success(()))
        #expect(vma.keyid == id)
        #expect(vma.vmPageProt.keyid == id)
        #expect(vma.anonVMA == nil && vma.anonVMAChain.isEmpty)
        #expect(k.frame(t, base) == nil)                                       // zapped
        #expect(k.allocator.refcount(oldFrame) == 0)                            // and freed
        k.write(t, base, "new")
        let pte = try #require(k.leaf(t, base))
        #expect(pte.keyid(k.layout) == id)                                      // KeyID in the PTE
        #expect(k.allocator.pageKeyID(pte.pfn(k.layout)) == id)
        // smaps shows it; maps does not change format.
        let smaps = try #require(k.procSmaps(t.pid))
        #expect(smaps.contains("KeyID:          \(String(repeating: " ", count: 8 - String(id.rawValue).count))\(id.rawValue)\n"))
        // Plain mprotect keeps the KeyID in vm_page_prot and in every PTE.
        #expect(k.mprotect(t.pid, addr: VirtAddr(base), length: 2 * 4096, prot: .read) == .success(()))
        #expect(vma.keyid == id)
        #expect(k.leaf(t, base)?.keyid(k.layout) == id)
        #expect(k.read(t, base, 3) == Array("new".utf8))
    }

    @Test func differentKeyIDsNeverMergeEqualOnesDo() throws {
        let (k, t) = try makeMKTMEKernel()
        let a = k.mktmeKey("a"), b = k.mktmeKey("b")
        k.anonMap(base, 3 * 4096, [])
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: a) == .success(()))
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base + 4096), length: 4096, prot: rw, serial: b) == .success(()))
        #expect(t.mm.mapCount == 3)
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base + 4096), length: 8192, prot: rw, serial: a) == .success(()))
        #expect(t.mm.mapCount == 1)
        #expect(t.mm.allVMAs.first?.keyid == k.keyid(of: a))
        #expect(k.keys.references.count(k.keyid(of: a)) == 2)
        #expect(k.keys.references.count(k.keyid(of: b)) == 1)
        // /proc/PID/maps: one line.
        #expect(k.procMaps(t.pid)?.split(separator: "\n").count == 1)
    }

    @Test func atomicPatternKeepsThePkey() throws {
        let (k, t) = try makeMKTMEKernel()
        let key = k.mktmeKey("a")
        k.anonMap(base, 4096, [])
        let pkey = try k.pkeyAlloc(t.pid, flags: 0, initVal: 0).get()
        #expect(k.pkeyMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: [], pkey: pkey) == .success(()))
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: key) == .success(()))
        let vma = try #require(t.mm.vma(containing: VirtAddr(base)))
        #expect(vma.vmFlags.pkey == pkey)
        #expect(vma.keyid == k.keyid(of: key))
        let smaps = try #require(k.procSmaps(t.pid))
        #expect(smaps.contains("ProtectionKey:         \(pkey)\n"))
    }

    @Test func nonAnonymousVMAInRangeChangesNothing() throws {
        let (k, t) = try makeMKTMEKernel()
        let key = k.mktmeKey("a")
        k.anonMap(base, 4096)
        k.write(t, base, "keep")
        k.anonMap(base + 4096, 4096, shared: true)
        let before = k.procMaps(t.pid)
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 8192, prot: .read, serial: key) == .failure(.EINVAL))
        #expect(k.procMaps(t.pid) == before)
        #expect(t.mm.allVMAs.allSatisfy { $0.keyid == .tme })
        #expect(k.keys.references.count(k.keyid(of: key)) == 1)
        #expect(k.read(t, base, 4) == Array("keep".utf8))
    }

    @Test func policyNoneIsMKTMEOff() throws {
        let (k, t) = try makeMKTMEKernel(policy: .none)
        #expect(!k.mktme.directMap.mktmeEnabled)
        #expect(k.mktme.directMap.disabledReason?.contains("policy=none") == true)
        #expect(k.addKey(t.pid, type: "mktme", description: "a", payload: "type=cpu algorithm=aes-xts-128",
                         keyring: .processKeyring).map { _ in 0 } == .failure(.ENODEV))
        k.anonMap(base, 4096)
        k.write(t, base, "plain")
        #expect(k.leaf(t, base)?.keyid(k.layout) == .tme)
    }

    @Test func userKeysOffModelsPATCHv2() throws {
        let (k, t) = try makeMKTMEKernel(userKeys: false)
        #expect(k.addKey(t.pid, type: "mktme", description: "u",
                         payload: "type=user algorithm=aes-xts-128 key=00112233445566778899aabbccddeeff tweak=00112233445566778899aabbccddeeff",
                         keyring: .processKeyring).map { _ in 0 } == .failure(.EINVAL))
        _ = k.mktmeKey("cpu")
    }
}
