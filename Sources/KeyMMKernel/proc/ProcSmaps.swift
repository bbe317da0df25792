// /proc/PID/smaps (show_smap): the maps line, then Size/KernelPageSize/MMUPageSize, the
// page counters (__show_smap, values in kB right-aligned in 8 columns), THPeligible,
// ProtectionKey (when pkeys are enabled), the MKTME series' KeyID line, and VmFlags with
// the two-letter mnemonics in bit order (show_smap_vma_flags).
//
// Invariants: counters come from the page-table layer (vmaPageStats); flags Linux does not
// print (the pkey bits) are skipped; "sd" appears only with soft-dirty configured.
import KeyMMBase

extension Kernel {
    /// /proc/PID/smaps; nil for an unknown pid.
    public func procSmaps(_ pid: ProcessID) -> String? {
        guard let task = tasks[pid] else { return nil }
        var out = ""
        for vma in task.mm.vmas { showSmap(task.mm, vma, into: &out) }
        return out
    }

    func showSmap(_ mm: MM, _ vma: VMA, into out: inout String) {
        showMapVMA(mm, vma, into: &out)
        let st = glueVMAStats(mm, vma)
        func put(_ label: String, _ bytes: UInt64, width: Int = 8) {
            out += label
            let n = String(bytes >> 10)
            if n.count < width { out += String(repeating: " ", count: width - n.count) }
            out += n
            out += " kB\n"
        }
        put("Size:           ", vma.vmEnd.distance(from: vma.vmStart))
        put("KernelPageSize: ", UInt64(pageSize))
        put("MMUPageSize:    ", UInt64(pageSize))
        put("Rss:            ", st.rss)
        put("Pss:            ", st.pss)
        put("Pss_Dirty:      ", st.pssDirty)
        put("Shared_Clean:   ", st.sharedClean)
        put("Shared_Dirty:   ", st.sharedDirty)
        put("Private_Clean:  ", st.privateClean)
        put("Private_Dirty:  ", st.privateDirty)
        put("Referenced:     ", st.referenced)
        put("Anonymous:      ", st.anonymous)
        put("KSM:            ", 0)
        put("LazyFree:       ", 0)
        put("AnonHugePages:  ", st.anonHuge)
        put("ShmemPmdMapped: ", 0)
        put("FilePmdMapped:  ", 0)
        put("Shared_Hugetlb: ", 0)
        put("Private_Hugetlb: ", 0, width: 7)
        put("Swap:           ", st.swap)
        put("SwapPss:        ", 0)
        put("Locked:         ", st.locked)
        out += "THPeligible:    " + pad8(thpVMAAllowable(vma, forcedCollapse: false) ? 1 : 0) + "\n"
        if pkeysEnabled {
            out += "ProtectionKey:  " + pad8(UInt64(vma.vmFlags.pkey)) + "\n"
        }
        out += "KeyID:          " + pad8(UInt64(vma.keyid.rawValue)) + "\n"
        out += "VmFlags: " + vmFlagsMnemonics(vma.vmFlags) + "\n"
    }

    /// show_smap_vma_flags(): "rd wr mr mw me ac " (each followed by a space).
    public func vmFlagsMnemonics(_ flags: VMFlags) -> String {
        var s = ""
        var bits = flags.rawValue & ~VMFlags.pkeyMask.rawValue
        if !config.softDirty { bits &= ~VMFlags.softDirty.rawValue }
        while bits != 0 {
            let i = bits.trailingZeroBitCount
            bits &= bits &- 1
            s += Kernel.vmFlagMnemonics[i] ?? "??"
            s += " "
        }
        return s
    }

    static let vmFlagMnemonics: [Int: String] = [
        0: "rd", 1: "wr", 2: "ex", 3: "sh", 4: "mr", 5: "mw", 6: "me", 7: "ms", 8: "gd", 9: "um",
        10: "pf", 11: "gu", 12: "uw", 13: "lo", 14: "io", 15: "sr", 16: "rr", 17: "dc", 18: "de", 19: "lf",
        20: "ac", 21: "nr", 22: "ht", 23: "sf", 24: "ar", 25: "wf", 26: "dd", 27: "sd", 28: "mm",
        29: "hg", 30: "nh", 31: "mg", 40: "dp", 42: "sl",
    ]
}

/// %8u
@inline(__always) func pad8(_ v: UInt64) -> String {
    let s = String(v)
    return s.count >= 8 ? s : String(repeating: " ", count: 8 - s.count) + s
}
