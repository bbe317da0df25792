// Every invariant fires on a hand-made violation (so the check can fail), with a report naming
// the object, and is silent on the correct run it was made from — with the full sweep after every
// call and with the incremental checks alone (the hand-made change goes through the same hooks
// the kernel's own changes do).
import Foundation
import Testing
import KeyMM
// Some tests break an invariant on purpose (a VMA's KeyID set behind the kernel's back): internal setters.
@testable import KeyMMKernel

@Suite struct InvariantTests {
    @Test(arguments: CheckMode.allCases) func correctRunIsSilent(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        #expect(h.runner.violations.isEmpty, "\(h.runner.violations)")
        #expect(h.checker.fullCheck().isEmpty)
        #expect(h.checker.callsChecked == 6)
        #expect(h.checker.sweeps >= (mode == .incrementalOnly ? 0 : 6))
        #expect(h.checker.shadowMismatches.isEmpty, "\(h.checker.shadowMismatches)")
    }

    @Test(arguments: CheckMode.allCases) func keyidRefcountBalance(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        h.kernel.keys.references.get(KeyID(1))
        let v = h.check()
        #expect(v.first?.invariant == .keyidRefcountBalance)
        #expect(v.first?.detail.contains("KeyID 1") == true)
        #expect(v.first?.detail.contains("count 4") == true)   // own 1 + 1 VMA + 1 page, plus the stray get
    }

    @Test(arguments: CheckMode.allCases) func keyidReuseWhileReferenced(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        try h.run("1 keyctl(KEYCTL_INVALIDATE, 1000) = 0\n")
        #expect(h.runner.violations.isEmpty)
        let refs = h.kernel.keys.references
        #expect(refs.state(KeyID(1)).name == "dead")
        // A stray put drops the dead KeyID's count to zero while its VMA and page still use it:
        // it is released and reprogrammed (CLEAR_KEY).
        refs.put(KeyID(1), refs.count(KeyID(1)))
        let v = h.check()
        #expect(v.first?.invariant == .keyidReuseWhileReferenced, "\(v)")
        #expect(v.first?.detail.contains("CLEAR_KEY") == true)
        #expect(v.fired(.keyidRefcountBalance))
    }

    @Test(arguments: CheckMode.allCases) func mprotectChangedEncryption(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        h.checker.beforeCall(h.call(.protectionChange, address: Harness.secretVA, length: 32768))
        h.setPTEKeyID(Harness.secretVA, KeyID(0))
        let v = h.checker.afterCall(h.call(.protectionChange, address: Harness.secretVA, length: 32768), outcome: .success(value: 0))
        #expect(v.first?.invariant == .mprotectChangedEncryption, "\(v)")
        #expect(v.first?.detail.contains("had KeyID 1 before the call and has KeyID 0") == true)
        #expect(v.fired(.pteKeyIDMismatch))
    }

    @Test(arguments: CheckMode.allCases) func mergedAcrossKeyIDs(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        // The KeyID-0 VMA at 0x7e0000008000 suddenly carries KeyID 1 (as if merged into its
        // encrypted neighbour) without an encrypt_mprotect.
        let vma = h.task.mm.vma(containing: Harness.plainVA)!
        vma.vmPageProt.keyid = KeyID(1)
        h.kernel.keys.references.get(KeyID(1))   // the merged VMA's reference, so only the merge shows
        let v = h.check(.protectionChange, address: Harness.plainVA, length: 4096)
        #expect(v.first?.invariant == .mergedAcrossKeyIDs, "\(v)")
        #expect(v.first?.detail.contains("KeyID 0 VMA") == true)
        // The same change inside an encrypt_mprotect's range is allowed.
        let h2 = try Harness(mode: mode)
        h2.task.mm.vma(containing: Harness.plainVA)!.vmPageProt.keyid = KeyID(1)
        #expect(!h2.check(.keyIDChange, address: Harness.plainVA, length: 32768).fired(.mergedAcrossKeyIDs))
    }

    @Test(arguments: CheckMode.allCases) func ksmCrossKeyID(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        // Tenant A's encrypted page becomes a KSM page also mapped at the KeyID-0 address.
        let page = h.pfn(Harness.secretVA)
        let a = h.kernel.allocator
        let plain = h.pfn(Harness.plainVA)
        h.task.mm.pageTable.set(h.slot(Harness.plainVA), h.pte(Harness.plainVA).with(pfn: page, layout: h.kernel.layout))
        a.decMapcount(plain); a.putPage(plain)
        a.incMapcount(page); a.getPage(page)
        a.setFlags(page, .ksm)
        let v = h.check()
        #expect(v.first?.invariant == .ksmCrossKeyID, "\(v)")
        #expect(v.first?.detail.contains("KSM page \(Fmt_pfn(page))") == true)
    }

    @Test(arguments: CheckMode.allCases) func encryptedZeroPage(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        #expect(h.pfn(Harness.zeroVA) == h.kernel.pgtable.zeroPFN)
        h.setPTEKeyID(Harness.zeroVA, KeyID(1))
        let v = h.check()
        #expect(v.first?.invariant == .encryptedZeroPage, "\(v)")
        #expect(v.first?.detail.contains("zero page") == true)
    }

    @Test(arguments: CheckMode.allCases) func pteKeyIDMismatch(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        h.setPTEKeyID(Harness.plainVA, KeyID(1))
        let v = h.check()
        #expect(v.first?.invariant == .pteKeyIDMismatch, "\(v)")
        #expect(v.first?.detail.contains("VA 0x7e0000008000") == true)
    }

    @Test(arguments: CheckMode.allCases) func pteOutsideVMA(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        let vma = h.task.mm.vma(containing: Harness.plainVA)!
        h.task.mm.adjust(vma, start: Harness.plainVA.advanced(by: 4096), end: vma.vmEnd, pgoff: vma.vmPgoff + 1)
        let v = h.check(.remap)
        #expect(v.first?.invariant == .pteOutsideVMA, "\(v)")
    }

    @Test(arguments: CheckMode.allCases) func frameAccounting(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        h.kernel.allocator.incMapcount(h.pfn(Harness.plainVA))
        var v = h.check()
        #expect(v.first?.invariant == .frameAccounting, "\(v)")
        #expect(v.first?.detail.contains("mapcount 2 but 1") == true)
        // A mapped page freed behind the page table's back.
        let h2 = try Harness(mode: mode)
        let p = h2.pfn(Harness.plainVA)
        h2.kernel.allocator.decMapcount(p)
        h2.kernel.allocator.putPage(p)
        v = h2.check()
        #expect(v.fired(.frameAccounting))
        #expect(v.contains { $0.detail.contains("the allocator has it free") })
    }

    @Test(arguments: CheckMode.allCases) func staleCacheLine(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        let pa = h.pfn(Harness.plainVA).physAddr
        h.kernel.machine.write(pa, keyid: KeyID(1), bytes: [1, 2, 3])
        let v = h.check()
        #expect(v.first?.invariant == .staleCacheLine, "\(v)")
        // The partial-line store filled the line through KeyID 1 first: seen at the fill.
        #expect(v.first?.detail.contains("through KeyID 1") == true)
        // Inside a call: a line read through the wrong KeyID and flushed again before the call
        // ends leaves nothing in the cache, but the fill was seen.
        let h2 = try Harness(mode: mode)
        let pa2 = h2.pfn(Harness.plainVA).physAddr
        h2.checker.beforeCall(h2.call())
        _ = h2.kernel.machine.read(pa2, keyid: KeyID(1), count: 8)
        h2.kernel.machine.clflush(pa2, keyid: KeyID(1), length: 64)
        #expect(h2.kernel.machine.cache.entries(ofLine: pa2).allSatisfy { $0.keyid == .tme })
        let v2 = h2.check()
        #expect(v2.first?.invariant == .staleCacheLine, "\(v2)")
        #expect(v2.first?.detail.contains("was read through KeyID 1 during the call") == true)
    }

    @Test(arguments: CheckMode.allCases) func zeroPageModified(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        let z = try #require(h.kernel.pgtable.zeroPFN)
        h.kernel.machine.write(z.physAddr.advanced(by: 128), keyid: .tme, bytes: [0x42])
        let v = h.check()
        #expect(v.first?.invariant == .zeroPageModified, "\(v)")
        #expect(v.first?.detail.contains("line 2") == true)
    }

    @Test(arguments: CheckMode.allCases) func crossKeyIDPlaintext(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        // A kernel bug copies tenant A's plaintext into the KeyID-0 page; a read through KeyID 0
        // then returns bytes only KeyID 1 ever wrote.
        let secret = Array("tenant A secret: 0123456789abcdef0123456789abcdef0123456789abcd".utf8)
        h.kernel.machine.write(h.pfn(Harness.plainVA).physAddr, keyid: .tme, bytes: secret)
        try h.run("1 mem_read(0x7e0000008000, 64)\n")
        let v = h.runner.violations
        #expect(v.first?.invariant == .crossKeyIDPlaintext, "\(v)")
        #expect(v.first?.detail.contains("written only through KeyID 1") == true)
        // The same physical line read through another KeyID (no copy needed): stale plaintext.
        let h2 = try Harness(mode: mode)
        h2.setPTEKeyID(Harness.secretVA, .tme)
        h2.kernel.machine.write(h2.pfn(Harness.secretVA).physAddr, keyid: .tme, bytes: secret)
        try h2.run("1 mem_read(0x7e0000000000, 64)\n")
        #expect(h2.runner.violations.fired(.crossKeyIDPlaintext))
    }

    @Test(arguments: CheckMode.allCases) func plaintextInDRAM(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        let secret = Array("tenant A secret: 0123456789abcdef0123456789abcdef0123456789abcd".utf8)
        let pa = h.pfn(Harness.secretVA).physAddr
        secret.withUnsafeBytes { h.kernel.machine.dram.write(pa, from: $0) }
        let v = h.checker.fullCheck()
        #expect(v.first?.invariant == .plaintextInDRAM, "\(v)")
        #expect(v.first?.detail.contains("plaintext written through KeyID 1") == true)
        // Through the cache: the secret stored through a no-encrypt KeyID and written back.
        let h2 = try Harness(mode: mode)
        try h2.run("1 add_key(\"mktme\", \"clear\", \"type=no-encrypt\", 15, KEY_SPEC_USER_KEYRING) = 1001\n")
        let n = KeyID(2)
        #expect(h2.kernel.machine.engine.isPlaintext(n))
        let pa2 = h2.pfn(Harness.plainVA).physAddr
        h2.kernel.machine.write(pa2, keyid: n, bytes: secret)
        h2.checker.beforeCall(h2.call())
        h2.kernel.machine.clflush(pa2, keyid: n, length: 64)
        let v2 = h2.check()
        #expect(v2.fired(.plaintextInDRAM), "\(v2)")
    }

    @Test(arguments: CheckMode.allCases) func violationsAreReportedOnceAndInPriorityOrder(_ mode: CheckMode) throws {
        let h = try Harness(mode: mode)
        h.setPTEKeyID(Harness.plainVA, KeyID(1))
        h.kernel.keys.references.get(KeyID(1))
        let v = h.check()
        #expect(v.names == ["keyid-refcount-balance", "pte-keyid-mismatch"])
        #expect(h.check().isEmpty)   // the same problems are not reported again
        #expect(h.checker.violations.count == 2)
        #expect(v.first?.description.hasPrefix("<test>:0: violation: keyid-refcount-balance: ") == true)
    }

    @Test func invariantNamesAndStatementsAreComplete() {
        #expect(Invariant.allCases.count == 26)   // 14 MKTME + 6 confidential-VM + 6 SGX (docs/invariants.md)
        for inv in Invariant.allCases {
            #expect(!inv.statement.isEmpty)
            #expect(Invariant(rawValue: inv.rawValue) == inv)
        }
    }
}

/// "PFN 0x..." as reports print it.
func Fmt_pfn(_ p: PFN) -> String { "PFN 0x" + String(p.rawValue, radix: 16) }
