// docs/sources.md, seed 000: one reference count per KeyID — the key's own, one per VMA (encrypt_mprotect,
// vm_area_dup at split and fork, vm_area_free) and one per 4 KiB page (1 << order at prep,
// one per page at free, so a split THP balances) — and the KeyID is released (CLEAR_KEY)
// only when the count reaches zero after the key died; pinned pages keep it alive after the
// VMA, the process and the key are gone. Also: fork/exec/exit drive the key service, and
// key_gc_delay runs on modeled time.
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

@Suite struct MKTMELifetimeTests {
    let base: UInt64 = 0x7f00_0000_0000

    @Test func referencesArePerVMAAndPer4KPage() throws {
        let (k, t) = try makeMKTMEKernel()
        let key = k.mktmeKey("a")
        let id = k.keyid(of: key)
        let refs = k.keys.references
        #expect(refs.count(id) == 1)                                  // the key's own
        k.anonMap(base, 4 * 4096, [])
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4 * 4096, prot: rw, serial: key) == .success(()))
        #expect(refs.count(id) == 2)                                  // + one VMA
        for i in 0..<3 { k.write(t, base + UInt64(i) * 4096, "x") }
        #expect(refs.count(id) == 5)                                  // + three pages
        // A split (plain mprotect of the middle) duplicates the VMA twice: +2 VMA references.
        #expect(k.mprotect(t.pid, addr: VirtAddr(base + 4096), length: 4096, prot: .read) == .success(()))
        #expect(t.mm.mapCount == 3)
        #expect(refs.count(id) == 7)
        // The KeyID stays with every piece (plain mprotect keeps it).
        #expect(t.mm.allVMAs.allSatisfy { $0.keyid == id })
        // Re-merge: mprotect back gives one VMA again, and two VMA references go.
        #expect(k.mprotect(t.pid, addr: VirtAddr(base + 4096), length: 4096, prot: rw) == .success(()))
        #expect(t.mm.mapCount == 1)
        #expect(refs.count(id) == 5)
        // fork: the child's VMA is a vm_area_dup (+1); pages are shared (no new page refs).
        let child = try #require(try? k.fork(t.pid).get())
        #expect(refs.count(id) == 6)
        // The child's write copies a page: the copy takes the child VMA's KeyID (+1 page).
        let ct = try #require(k.task(child))
        k.write(ct, base, "child")
        #expect(refs.count(id) == 7)
        let cf = try #require(k.frame(ct, base))
        #expect(k.allocator.pageKeyID(cf) == id)
        k.exit(child)
        #expect(refs.count(id) == 5)
        #expect(k.munmap(t.pid, addr: VirtAddr(base), length: 4 * 4096) == .success(()))
        #expect(refs.count(id) == 1)
        #expect(refs.anomalies.isEmpty)
    }

    @Test func splitHugePageBalancesItsPerPageReferences() throws {
        let (k, t) = try makeMKTMEKernel(thp: .always)
        let key = k.mktmeKey("thp")
        let id = k.keyid(of: key)
        let start: UInt64 = 0x7f00_0020_0000                             // 2 MiB aligned
        k.anonMap(start, 2 << 20, [])
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(start), length: 2 << 20, prot: rw, serial: key) == .success(()))
        k.write(t, start, "huge")
        #expect(k.leaf(t, start)?.isHuge == true)
        #expect(k.keys.references.count(id) == 1 + 1 + 512)              // key + VMA + 512 pages
        #expect(k.read(t, start, 4) == Array("huge".utf8))
        // munmap of the upper half splits the THP; 256 pages are freed one by one.
        #expect(k.munmap(t.pid, addr: VirtAddr(start + (1 << 20)), length: 1 << 20) == .success(()))
        #expect(k.keys.references.count(id) == 1 + 1 + 256)
        #expect(k.read(t, start, 4) == Array("huge".utf8))
        #expect(k.munmap(t.pid, addr: VirtAddr(start), length: 1 << 20) == .success(()))
        #expect(k.keys.references.count(id) == 1)
        #expect(k.keys.references.anomalies.isEmpty)
    }

    @Test func pinnedPageKeepsTheKeyIDAfterVMAProcessAndKeyAreGone() throws {
        let (k, t) = try makeMKTMEKernel()
        let log = KeyIDEventLog(k)
        let key = k.mktmeKey("pinned")
        let id = k.keyid(of: key)
        k.anonMap(base, 2 * 4096, [])
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 2 * 4096, prot: rw, serial: key) == .success(()))
        k.write(t, base, "pinned secret")
        let handle = try k.gupPin(t, VirtAddr(base), 1).get()
        let pinned = try #require(k.frame(t, base))
        #expect(k.allocator.flags(pinned).contains(.pinned))
        #expect(t.mm.pinnedVM == 1)
        #expect(k.allocator.refcount(pinned) == 2)                        // mapping + pin
        #expect(k.munmap(t.pid, addr: VirtAddr(base), length: 2 * 4096) == .success(()))
        #expect(k.allocator.refcount(pinned) == 1)                        // the pin alone
        #expect(k.keyctl(t.pid, KeyctlOperation.invalidate.rawValue, key).map(\.value) == .success(0))
        #expect(k.keys.references.state(id) == .dead(key))
        k.exit(t.pid)
        // Dead, but the pinned page still references it: no CLEAR_KEY yet.
        #expect(k.keys.references.count(id) == 1)
        #expect(!log.released(id))
        #expect(log.clears(id).isEmpty)
        // The pinned page still holds the data, readable through the dead KeyID by the kernel.
        #expect(k.kernelRead(pinned, count: 13) == Array("pinned secret".utf8))
        #expect(k.gupUnpin(handle) == .success(()))
        #expect(k.keys.references.count(id) == 0)
        #expect(log.released(id))
        #expect(log.clears(id) == [0])                                   // reprogrammed only at zero
        #expect(k.keys.references.state(id) == .free)
        #expect(k.gupUnpin(handle) == .failure(.EINVAL))
        #expect(k.allocator.anomalies.isEmpty)
    }

    @Test func aDeadKeysKeyIDIsNotHandedOutWhileReferenced() throws {
        // keyid-bits 1: a single MKTME KeyID.
        let (k, t) = try makeMKTMEKernel(keyidBits: 1)
        let a = k.mktmeKey("a")
        #expect(k.keyid(of: a) == KeyID(1))
        k.anonMap(base, 4096, [])
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: a) == .success(()))
        #expect(k.keyctl(t.pid, KeyctlOperation.invalidate.rawValue, a).map(\.value) == .success(0))
        // The VMA alone keeps KeyID 1: no KeyID for a new key.
        #expect(k.addKey(t.pid, type: "mktme", description: "b", payload: "type=cpu algorithm=aes-xts-128",
                         keyring: .processKeyring).map { _ in 0 } == .failure(.ENOKEY))
        // The dead KeyID still works for the VMA that has it (the hardware key is not cleared yet).
        k.write(t, base, "still")
        #expect(k.read(t, base, 5) == Array("still".utf8))
        #expect(k.allocator.pageKeyID(try #require(k.frame(t, base))) == KeyID(1))
        #expect(k.munmap(t.pid, addr: VirtAddr(base), length: 4096) == .success(()))
        let b = k.mktmeKey("b")
        #expect(k.keyid(of: b) == KeyID(1))
        #expect(k.keys.references.programCount(KeyID(1)) == 3)             // a, CLEAR_KEY, b
    }

    @Test func revokedKeyKeepsItsKeyIDUntilKeyGCDelayOfModeledTime() throws {
        let (k, t) = try makeMKTMEKernel(keyidBits: 1)
        let a = k.mktmeKey("a")
        #expect(k.keyctl(t.pid, KeyctlOperation.revoke.rawValue, a).map(\.value) == .success(0))
        k.anonMap(base, 4096, [])
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: a) == .failure(.EKEYREVOKED))
        #expect(k.keys.references.state(KeyID(1)) == .inUse(a))
        #expect(k.nanosleep(t.pid, seconds: 299, nanoseconds: 0) == .success(()))
        #expect(k.keys.references.state(KeyID(1)) == .inUse(a))
        #expect(k.nanosleep(t.pid, seconds: 1, nanoseconds: 0) == .success(()))
        #expect(k.keys.references.state(KeyID(1)) == .free)
        #expect(k.encryptMprotect(t.pid, addr: VirtAddr(base), length: 4096, prot: rw, serial: a) == .failure(.ENOKEY))
        #expect(k.modeledSeconds >= 300 && k.modeledSeconds < 301)
        #expect(k.nanosleep(t.pid, seconds: 0, nanoseconds: 1_000_000_000) == .failure(.EINVAL))
    }

    @Test func modeledTimeAlsoAdvancesWithTheCostClock() throws {
        let (k, t) = try makeMKTMEKernel(keyidBits: 1)
        let a = k.mktmeKey("a")
        #expect(k.keyctl(t.pid, KeyctlOperation.revoke.rawValue, a).map(\.value) == .success(0))
        // 300 s of modeled cycles at the profile's TSC frequency.
        k.machine.clock.charge(.syscall, Int(300 * k.machine.clock.profile.tscHz) / Int(k.machine.clock.price(of: .syscall)) + 1)
        k.keyServiceTick()
        #expect(k.keys.references.state(KeyID(1)) == .free)
    }

    @Test func forkExecExitDriveTheKeyService() throws {
        let (k, t) = try makeMKTMEKernel()
        // A key in the session keyring is shared with a forked child; one in the process keyring is not.
        guard case .success(let s) = k.addKey(t.pid, type: "mktme", description: "ses",
                                               payload: "type=cpu algorithm=aes-xts-128", keyring: .sessionKeyring) else {
            Issue.record("add_key"); return
        }
        let p = k.mktmeKey("proc")
        let child = try k.fork(t.pid).get()
        k.anonMap(base, 4096, [], pid: child)
        #expect(k.encryptMprotect(child, addr: VirtAddr(base), length: 4096, prot: rw, serial: s) == .success(()))
        // The child does not possess the parent's process-keyring key, but may view it (same uid:
        // the mktme key's user-view bit), so encrypt_mprotect works with it too.
        #expect(k.keys.keyrings(of: ProcessKeyrings(pid: child.rawValue)).process == nil)
        #expect(k.keys.keyrings(of: ProcessKeyrings(pid: child.rawValue)).session
                == k.keys.keyrings(of: ProcessKeyrings(pid: 1)).session)
        // exec drops the process keyring: the key only it held dies, its KeyID is killed.
        let pid = k.keyid(of: p)
        #expect(k.execve(t.pid) == .success(()))
        #expect(k.keys.key(p) == nil)
        #expect(k.keys.references.state(pid) == .free)
        // exit of the child releases its VMA reference; the session key lives on (the parent holds it).
        k.exit(child)
        #expect(k.keys.references.count(k.keyid(of: s)) == 1)
        k.exit(t.pid)
        #expect(k.keys.key(s) == nil)
        #expect(k.keys.references.anomalies.isEmpty)
    }
}
