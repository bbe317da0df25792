// Property tests: the parser never crashes or hangs on any bytes and always answers with events or
// located errors; formatting then parsing gives back the same call.
//
// Scale with KEYMM_FUZZ_INPUTS (default 1500 per property, kept small for CI); the 1M run:
//   KEYMM_FUZZ_INPUTS=1000000 swift test -c release --scratch-path .build-trace --filter FuzzTests
import Testing
import KeyMMBase
import PropertyBased
import KeyMMTrace
#if canImport(Glibc)
import Glibc
#endif

/// Inputs per property (environment KEYMM_FUZZ_INPUTS, default 1500).
let fuzzInputs: Int = {
    if let v = getenv("KEYMM_FUZZ_INPUTS"), let n = Int(String(cString: v)), n > 0 { return n }
    return 1500
}()

/// Lines of real logs and of every form, the seeds that mutations start from.
let seedLines: [String] = [
    #"5138  execve("/usr/bin/true", ["true"], 0x7ffd2e587758 /* 39 vars */) = 0"#,
    #"5138  brk(NULL)                         = 0x55860efe1000"#,
    #"5138  mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7fdf87bce000"#,
    #"5138  access("/etc/ld.so.preload", R_OK) = -1 ENOENT (No such file or directory)"#,
    #"5138  openat(AT_FDCWD, "/etc/ld.so.cache", O_RDONLY|O_CLOEXEC) = 3"#,
    #"5138  fstat(3, {st_mode=S_IFREG|0644, st_size=27002, ...}) = 0"#,
    #"5138  read(3, "\177ELF\2\1\1\3\0\0\0\0\0\0\0\0\3\0>\0\1\0\0\0P\237\2\0\0\0\0\0"..., 832) = 832"#,
    #"5138  mmap(0x7fdf87a13000, 1396736, PROT_READ|PROT_EXEC, MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE, 3, 0x26000) = 0x7fdf87a13000"#,
    #"5138  clone(child_stack=NULL, flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD <unfinished ...>"#,
    #"5140  set_robust_list(0x7f1234, 24) = 0"#,
    #"5138  <... clone resumed>, child_tidptr=0x7f1234) = 5140"#,
    #"5138  wait4(-1,  <unfinished ...>"#,
    #"5140  exit_group(0)                     = ?"#,
    #"5140  +++ exited with 0 +++"#,
    #"5138  <... wait4 resumed>[{WIFEXITED(s) && WEXITSTATUS(s) == 0}], 0, NULL) = 5140"#,
    #"5138  --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED, si_pid=5140, si_uid=0, si_status=0, si_utime=0, si_stime=0} ---"#,
    #"[pid  5141] 10:21:33.123456 mprotect(0x7fdf87bc1000, 16384, PROT_READ) = 0 <0.000013>"#,
    #"1700000000.123456 munmap(0x7fdf87bc5000, 33519) = 0"#,
    #"clone3({flags=CLONE_VM|CLONE_VFORK, exit_signal=SIGCHLD, stack=0x7f00, stack_size=0x9000} => {parent_tid=[5141]}, 88) = 5141"#,
    #"mmap(NULL, 2097152, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|21<<MAP_HUGE_SHIFT, -1, 0) = -1 ENOMEM (Cannot allocate memory)"#,
    #"prlimit64(0, RLIMIT_STACK, NULL, {rlim_cur=8192*1024, rlim_max=RLIM64_INFINITY}) = 0"#,
    #"rt_sigprocmask(SIG_SETMASK, ~[RTMIN RT_1], [CHLD], 8) = 0"#,
    #"read(3</etc/ld.so.cache>, "x", 1) = 1 <0.000002>"#,
    #"poll([{fd=3, events=POLLIN}], 1, 0) = 1 ([{fd=3, revents=POLLIN}])"#,
    #"syscall_0x1b2(0x7f0000000000, 4096, PROT_READ|PROT_WRITE, 123456) = 0"#,
    #"mem_write(0x7f0000000000, "hello\n\x00\177") = 8"#,
    #"mem_read(0x7f0000000000, 6) = "hello\n""#,
    #"mem_touch(0x7f0000000000, 8192, PROT_READ|PROT_WRITE) = SIGSEGV"#,
    #"add_key("user", "tenant-a", "key=00112233445566778899aabbccddeeff", 36, KEY_SPEC_PROCESS_KEYRING) = 123456"#,
    #"keyctl(KEYCTL_REVOKE, 123456) = 0"#,
    #"#@ set memory=4G"#,
    #"# a comment"#,
    #"+++ killed by SIGSEGV (core dumped) +++"#,
    #"     0.432 ( 0.027 ms): true/5347 mmap(len: 8192, prot: READ|WRITE, flags: PRIVATE|ANONYMOUS)           = 0x7efd41178000"#,
    #"         ? (         ): sh/15067  ... [continued]: clone())                                            = "#,
    #"     0.562 ( 0.000 ms): true/5152 minfault [_start+0x0] => /usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2@0x1ab70 (d.)"#,
]

/// Parses `bytes` strictly (collecting every error) and leniently, checking that every answer is
/// an event or a located error and that the reader finishes.
func checkParserAnswers(_ bytes: [UInt8]) {
    let lines = bytes.reduce(1) { $0 + ($1 == 0x0a ? 1 : 0) }
    let strict = TraceReader(bytes: bytes, name: "fuzz")
    var steps = 0
    while true {
        steps += 1
        if steps > 3 * lines + 10 {
            Issue.record("reader did not finish: \(steps) steps for \(lines) lines")
            return
        }
        do {
            guard let e = try strict.next() else { break }
            #expect(e.location.file == "fuzz")
            #expect(e.location.line >= 1 && e.location.line <= lines)
            _ = e.description
        } catch {
            #expect(error.location.file == "fuzz")
            #expect(error.location.line >= 1 && error.location.line <= lines)
            #expect(error.location.column >= 1)
            #expect(error.description.hasPrefix("fuzz:\(error.location.line):\(error.location.column): error: "))
        }
    }
    let lenient = TraceReader(bytes: bytes, name: "fuzz", lenient: true)
    var count = 0
    while let e = try? lenient.next() {
        count += 1
        _ = e
        if count > 3 * lines + 10 { Issue.record("lenient reader did not finish"); return }
    }
    #expect(lenient.skippedCount <= lines)
}

/// A small deterministic generator for mutations (the property library supplies the seed).
typealias SplitMix = SeededGenerator

let interestingBytes: [UInt8] = Array("\"\\()[]{}<>,|=.-#x0123456789 \t\n:/*~&!?+@ELPROT_NULL".utf8) + [0, 0xff, 0x80, 0xc3]

/// 1-6 seed lines, each mutated 0-4 times (insert, delete, duplicate, replace, truncate).
func mutatedInput(seed: UInt64) -> [UInt8] {
    var rng = SplitMix(seed: seed)
    var out: [UInt8] = []
    for n in 0..<Int.random(in: 1...6, using: &rng) {
        if n > 0 { out.append(0x0a) }
        var line = Array(seedLines[Int.random(in: 0..<seedLines.count, using: &rng)].utf8)
        for _ in 0..<Int.random(in: 0...4, using: &rng) {
            let at = line.isEmpty ? 0 : Int.random(in: 0..<line.count, using: &rng)
            switch Int.random(in: 0..<6, using: &rng) {
            case 0: line.insert(interestingBytes.randomElement(using: &rng)!, at: at)
            case 1: if !line.isEmpty { line.removeSubrange(at..<min(line.count, at + Int.random(in: 1...8, using: &rng))) }
            case 2: if !line.isEmpty { line.insert(contentsOf: line[at..<min(line.count, at + 6)], at: at) }
            case 3: if !line.isEmpty { line[at] = UInt8.random(in: 0...255, using: &rng) }
            case 4: line.removeSubrange(at..<line.count)
            default: if !line.isEmpty { line[at] = interestingBytes.randomElement(using: &rng)! }
            }
        }
        out += line
    }
    return out
}

@Suite struct FuzzTests {
    @Test func randomBytesGiveEventsOrLocatedErrors() async {
        await propertyCheck(count: fuzzInputs, input: Gen.uint8().array(of: 0...200)) { bytes in
            checkParserAnswers(bytes)
        }
    }

    @Test func randomPrintableTextGivesEventsOrLocatedErrors() async {
        let printable = Gen.element(of: Array("abcdefxyzNULPROT_MAP|0x123456789,()[]{}<>\"\\ =-.#+?:/\n".utf8))
        await propertyCheck(count: fuzzInputs, input: printable.compactMap { $0 }.array(of: 0...160)) { bytes in
            checkParserAnswers(bytes)
        }
    }

    @Test func mutatedRealLinesGiveEventsOrLocatedErrors() async {
        await propertyCheck(count: fuzzInputs, input: Gen.uint64()) { seed in
            checkParserAnswers(mutatedInput(seed: seed))
        }
    }

    @Test func seedLinesAllParse() throws {
        for line in seedLines where !line.contains("resumed") {
            _ = try TraceReader(string: line).readAll()
        }
        _ = try TraceReader(string: seedLines.joined(separator: "\n")).readAll()
    }

    @Test func hugeNumbersLongLinesAndDeepNestingAreSafe() {
        checkParserAnswers(Array(("f(" + String(repeating: "9", count: 5000) + ")").utf8))
        checkParserAnswers(Array(("f(" + String(repeating: "{a=", count: 3000)).utf8))
        checkParserAnswers(Array(("f(\"" + String(repeating: "\\", count: 4001)).utf8))
        checkParserAnswers(Array((String(repeating: "5 ", count: 3000) + "f()").utf8))
        checkParserAnswers(Array(("f(" + String(repeating: "1|", count: 20_000) + "1)").utf8))
        checkParserAnswers(Array(("f(" + String(repeating: "1<<", count: 20_000) + "1)").utf8))
        checkParserAnswers(Array(("f(" + String(repeating: "a=", count: 20_000) + "1)").utf8))
        checkParserAnswers(Array(("f(" + String(repeating: "x => ", count: 20_000) + "1)").utf8))
        checkParserAnswers(Array(repeating: 0, count: 10_000))
        checkParserAnswers(Array(repeating: 0x0a, count: 10_000))
    }
}
