// The `keymm` binary as a new user meets it (issue 16): every command run as a process, its
// exit status, standard output and standard error checked. What a user writes never vanishes
// (misspelled calls and errnos are located errors, unmodeled system calls are counted by name,
// empty/directory/non-strace files are errors), several files make one JSON, replay learns
// failed opens of files the model does not know, `--maps` of an exited process shows its last
// state, bench tables fit 100 columns, and no output holds a user key's hex.
//
// The binary is the one `swift build` put next to this test bundle (or KEYMM_BINARY, e.g. to
// show these tests failing on an older build); without one the tests are skipped, visibly.
import Foundation
import Testing
import KeyMM

enum KeyMMBinary {
    /// The keymm executable to test.
    static let path: String? = {
        let env = ProcessInfo.processInfo.environment
        if let p = env["KEYMM_BINARY"], FileManager.default.isExecutableFile(atPath: p) { return p }
        var candidates = [URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()]
        candidates.append(candidates[0].deletingLastPathComponent())
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        candidates.append(repo.appendingPathComponent(".build/debug"))
        for dir in candidates {
            let p = dir.appendingPathComponent("keymm").path
            if FileManager.default.isExecutableFile(atPath: p) { return p }
        }
        return nil
    }()

    static var available: Bool { path != nil }

    struct Output {
        var status: Int32
        var out: String
        var err: String
        var all: String { out + err }
    }

    /// Runs keymm with `arguments` in `directory`, standard input empty.
    static func run(_ arguments: [String], in directory: URL? = nil) throws -> Output {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path ?? "/nonexistent/keymm")
        p.arguments = arguments
        if let directory { p.currentDirectoryURL = directory }
        var env = ProcessInfo.processInfo.environment
        env["CI"] = "1"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle(forReadingAtPath: "/dev/null")
        try p.run()
        // Read both pipes while the process runs (a full pipe would block it).
        nonisolated(unsafe) var errData = Data()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async {
            errData = err.fileHandleForReading.readDataToEndOfFile()
            group.leave()
        }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return Output(status: p.terminationStatus, out: String(decoding: outData, as: UTF8.self),
                      err: String(decoding: errData, as: UTF8.self))
    }

    /// A fresh scratch directory.
    static func scratch() throws -> URL {
        let d = FileManager.default.temporaryDirectory.appendingPathComponent("keymm-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: d, withIntermediateDirectories: true)
        return d
    }

    static func write(_ text: String, _ name: String, in dir: URL) throws -> String {
        let url = dir.appendingPathComponent(name)
        try text.write(to: url, atomically: true, encoding: .utf8)
        return url.path
    }

    static let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
}

@Suite(.enabled(if: KeyMMBinary.available, "no keymm binary next to the tests (swift build) and no KEYMM_BINARY"))
struct CommandLineTests {
    typealias K = KeyMMBinary

    static let mmap = "1 mmap(0x7f0000000000, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n"

    // MARK: item 1: nothing a user writes vanishes

    @Test func misspelledAndMadeUpCallsAreLocatedErrorsWithAHint() throws {
        let dir = try K.scratch()
        let file = try K.write(Self.mmap + """
            1 munmpa(0x7f0000000000, 4096) = 0
            1 wbinvdd() = 0
            1 reclam(10) = 0
            1 encrypt_mprotec(0x7f0000000000, 4096, PROT_READ, 5) = 0
            1 frobnicate(1, 2, 3) = 0

            """, "typos.strace", in: dir)
        let r = try K.run(["run", file])
        #expect(r.status == 2, "\(r.all)")
        for (line, name, hint) in [(2, "munmpa", "munmap"), (3, "wbinvdd", "wbinvd"), (4, "reclam", "reclaim"),
                                   (5, "encrypt_mprotec", "encrypt_mprotect")] {
            #expect(r.err.contains("typos.strace:\(line):3: error: unknown call \(name)"), "\(r.err)")
            #expect(r.err.contains("did you mean \(hint)?"), "\(r.err)")
        }
        #expect(r.err.contains("typos.strace:6:3: error: unknown call frobnicate"), "\(r.err)")
        #expect(r.err.contains("model-only calls are"), "no hint: the list of model-only calls")
    }

    @Test func realSystemCallsTheModelDoesNotModelAreCountedByName() throws {
        let dir = try K.scratch()
        let file = try K.write(Self.mmap + """
            1 read(3, "abc", 3) = 3
            1 read(3, "abc", 3) = 3
            1 read(3, "", 3) = 0
            1 write(1, "x", 1) = 1
            1 syscall_0x1c7(1) = -1 ENOSYS (Function not implemented)

            """, "io.strace", in: dir)
        let r = try K.run(["run", file])
        #expect(r.status == 0, "\(r.all)")
        #expect(r.out.contains("not modeled: 5 calls of 3 system calls the model does not model: read ×3, syscall_0x1c7 ×1, write ×1"), "\(r.out)")
    }

    @Test func unknownErrnoIsBadInput() throws {
        let dir = try K.scratch()
        let file = try K.write("1 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = -1 EWHATEVER (Nope)\n1 munmap(0, 4096) = -1 EINVLA (Invalid argument)\n", "errno.strace", in: dir)
        let r = try K.run(["run", file])
        #expect(r.status == 2, "\(r.all)")
        #expect(r.err.contains("errno.strace:1:70: error: unknown errno EWHATEVER"), "\(r.err)")
        #expect(r.err.contains("errno.strace:2:24: error: unknown errno EINVLA in the result of munmap (did you mean EINVAL?)"), "\(r.err)")
    }

    @Test func emptyDirectoryAndNonStraceInputsAreErrors() throws {
        let dir = try K.scratch()
        let empty = try K.write("", "empty.strace", in: dir)
        let comments = try K.write("# only a comment\n\n", "comments.strace", in: dir)
        let text = try K.write("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n", "passwd", in: dir)
        for (command, file) in [("run", empty), ("run", comments), ("replay", empty), ("run", dir.path), ("replay", dir.path),
                                ("replay", text), ("run", text)] {
            let r = try K.run([command, file])
            #expect(r.status == 2, "\(command) \(file): \(r.all)")
            #expect(r.err.contains("error:"), "\(command) \(file): \(r.err)")
            #expect(!r.out.contains("(100.00%)"), "\(command) \(file) must not pass: \(r.out)")
        }
        let r = try K.run(["replay", dir.path])
        #expect(r.err.contains("is a directory"), "\(r.err)")
    }

    @Test func replayShowsSkippedLinesWithTheirErrors() throws {
        let dir = try K.scratch()
        var text = Self.mmap
        for i in 0..<8 { text += "1 mprotect(0x7f0000000000, 4096, PROT_REED) = 0   # \(i)\n" }
        text += "1 frobnicate() = 0\n"
        let file = try K.write(text, "skips.strace", in: dir)
        let r = try K.run(["replay", file])
        #expect(r.status == 0, "\(r.all)")
        #expect(r.out.contains("unparsed or unknown lines skipped: 9"), "\(r.out)")
        #expect(r.out.contains("skips.strace:2:34: error: argument 3 of mprotect: unknown constant PROT_REED (did you mean PROT_READ?)"), "\(r.out)")
        #expect(r.out.contains("... and 4 more"), "first few, then a count: \(r.out)")
    }

    // MARK: item 2: several files

    @Test func runJSONHoldsEveryFileAndATotal() throws {
        let dir = try K.scratch()
        let mktme = K.repo.appendingPathComponent("scenarios/mktme")
        let files = try FileManager.default.contentsOfDirectory(atPath: mktme.path).filter { $0.hasSuffix(".strace") }.sorted()
            .map { mktme.appendingPathComponent($0).path }
        let json = dir.appendingPathComponent("run.json").path
        let r = try K.run(["run"] + files + ["--json", json])
        #expect(r.status == 0, "\(r.all)")
        #expect(r.out.contains("total: \(files.count) files,"), "\(r.out)")
        let report = try JSONDecoder().decode(JSONValue.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
        guard case .object(let o) = report, case .array(let listed)? = o["files"], case .array(let perFile)? = o["per_file"] else {
            Issue.record("no files / per_file in \(json)")
            return
        }
        #expect(listed.map(\.text) == files)
        #expect(perFile.count == files.count)
        let sum = perFile.reduce(0.0) { t, f in if case .object(let fo) = f { return t + (fo["calls"]?.number ?? 0) }; return t }
        #expect(sum == o["calls"]?.number && sum > 100, "total calls = sum of per-file calls")
    }

    @Test func aScenarioTakenAsTheJSONOutputIsNotOverwritten() throws {
        // `keymm run --json a.strace b.strace`: a.strace is --json's value, not an input.
        let dir = try K.scratch()
        let a = try K.write("1 mmap(NULL, 4096, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000\n", "a.strace", in: dir)
        let b = try K.write("1 munmap(0x7f0000000000, 4096) = 0\n", "b.strace", in: dir)
        let before = try String(contentsOfFile: a, encoding: .utf8)
        let r = try K.run(["run", "--json", a, b])
        #expect(r.status == 2, "\(r.all)")
        #expect(r.err.contains("--json \(a): the file exists and is not a JSON result"), "\(r.err)")
        let afterRun = try String(contentsOfFile: a, encoding: .utf8)
        #expect(afterRun == before, "the scenario was overwritten")
        let fuzz = try K.run(["fuzz", "--ops", "10", "--json", a])
        let afterFuzz = try String(contentsOfFile: a, encoding: .utf8)
        #expect(fuzz.status == 2 && afterFuzz == before, "\(fuzz.all)")
        // A JSON result of an earlier run is replaced as before.
        let json = dir.appendingPathComponent("run.json").path
        #expect(try K.run(["run", b, "--json", json]).status == 0)
        #expect(try K.run(["run", b, "--json", json]).status == 0)
    }

    // MARK: item 3: a user's own capture

    @Test func replayLearnsFailedOpensOfFilesTheModelDoesNotKnow() throws {
        let dir = try K.scratch()
        let file = try K.write("""
            10 openat(AT_FDCWD, "/dev/tty", O_RDWR|O_NONBLOCK) = -1 ENXIO (No such device or address)
            10 openat(AT_FDCWD, "/etc/shadow", O_RDONLY|O_CLOEXEC) = -1 EACCES (Permission denied)
            10 mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000
            10 exit_group(0) = ?

            """, "capture.strace", in: dir)
        let r = try K.run(["replay", file, "--strict"])
        #expect(r.status == 0, "\(r.all)")
        #expect(!r.out.contains("divergence:"), "\(r.out)")
        #expect(r.out.contains("1/1 recorded results reproduced (100.00%)"), "\(r.out)")
        #expect(r.out.contains("learned from the log: 2 results"), "\(r.out)")
        #expect(r.out.contains("openat ENXIO ×1"), "\(r.out)")
    }

    // MARK: item 4: smaller things

    @Test func mapsOfAProcessThatExitedShowsItsLastState() throws {
        let dir = try K.scratch()
        let file = try K.write("""
            42 mmap(NULL, 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = 0x7f0000000000
            42 exit_group(0) = ?
            42 +++ exited with 0 +++

            """, "exits.strace", in: dir)
        let r = try K.run(["replay", file, "--maps", "42", "--quiet"])
        #expect(r.status == 0, "\(r.all)")
        #expect(r.out == "7f0000000000-7f0000002000 rw-p 00000000 00:00 0 \n", "\(r.out)")
        #expect(r.err.contains("process 42 exited"), "\(r.err)")
        let none = try K.run(["replay", file, "--maps", "7", "--quiet"])
        #expect(none.status == 2 && none.err.contains("no process 7"), "\(none.all)")
    }

    @Test func versionAndHelpSayWhatTheyTake() throws {
        let v = try K.run(["--version"])
        #expect(v.status == 0 && v.out.hasPrefix("keymm "), "\(v.all)")
        let h = try K.run(["run", "--help"])
        #expect(h.out.contains("--maps <pid>") && h.out.contains("--smaps <pid>"), "\(h.out)")
    }

    @Test func benchParserIsAWorkloadAndTablesFit100Columns() throws {
        let r = try K.run(["bench", "alloc-free", "keyid-pressure", "parser", "--quick", "--format", "table", "--policy", "none,wrapper,integrated,eager,per-keyid"])
        #expect(r.status == 0, "\(r.all)")
        #expect(r.out.contains("parser") && r.out.contains("lines/s"), "\(r.out)")
        let wide = r.out.split(separator: "\n").filter { $0.count > 100 }
        #expect(wide.isEmpty, "lines over 100 columns: \(wide.prefix(3))")
        #expect(r.out.contains("flushed_lines"), "counters still shown")
    }

    // MARK: item 6: key material

    /// A user key and tweak; the tests look for their hex, lower and upper case, in every output.
    static let key = "5f3c9a1e7b2d4c6f8a0e1d3b5c7a9f2e"
    static let tweak = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"

    static func leaks(_ text: String) -> [String] {
        [key, tweak, key.uppercased(), tweak.uppercased()].filter { text.contains($0) }
    }

    @Test func noOutputHoldsAUserKeysHex() throws {
        let dir = try K.scratch()
        let addKey = "add_key(\"mktme\", \"t\", \"type=user algorithm=aes-xts-128 key=\(Self.key) tweak=\(Self.tweak.uppercased())\", 90, KEY_SPEC_PROCESS_KEYRING)"
        // Runs, with a divergence on the key's own line (a wrong recorded serial is honored, so
        // expect an error instead) and a violation-free rest.
        let scenario = try K.write("""
            1 \(addKey) = -1 EINVAL (Invalid argument)
            1 mmap(0x7f0000000000, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0) = 0x7f0000000000
            1 mem_write(0x7f0000000000, "hello") = 5

            """, "keys.strace", in: dir)
        let json = dir.appendingPathComponent("run.json").path
        var outputs: [(String, String)] = []
        let run = try K.run(["run", scenario, "--trace", "--json", json, "--smaps", "1", "--maps", "1"])
        #expect(run.status == 1, "the add_key line diverges: \(run.all)")
        #expect(run.all.contains("key=<redacted, 32 hex>"), "\(run.all)")
        outputs.append(("run terminal", run.all))
        outputs.append(("run --json", try String(contentsOfFile: json, encoding: .utf8)))
        let replayJSON = dir.appendingPathComponent("replay.json").path
        let replay = try K.run(["replay", scenario, "--trace", "--json", replayJSON, "--smaps", "1"])
        outputs.append(("replay terminal", replay.all))
        outputs.append(("replay --json", try String(contentsOfFile: replayJSON, encoding: .utf8)))
        // An input error on a line holding a key.
        let bad = try K.write("1 \(addKey) = 5 junk\n", "bad.strace", in: dir)
        let error = try K.run(["run", bad])
        #expect(error.status == 2, "\(error.all)")
        outputs.append(("error", error.all))
        let badArg = try K.write("1 add_key(\"mktme\", \"t\", \"type=user key=\(Self.key) tweak=\(Self.tweak)\", KEY_SPEC_PROCES) = 5\n", "badarg.strace", in: dir)
        let argError = try K.run(["run", badArg])
        outputs.append(("argument error", argError.all))
        // The report of the run JSON.
        let html = dir.appendingPathComponent("r.html").path
        let report = try K.run(["report", json, "--output", html])
        #expect(report.status == 0, "\(report.all)")
        outputs.append(("report", try String(contentsOfFile: html, encoding: .utf8)))
        // A fuzz finding: seed 11 shrinks to a program with a type=user add_key the violation does
        // not need (older builds wrote its key= hex into the scenario).
        let fuzzFile = dir.appendingPathComponent("fuzz.strace").path
        let fuzz = try K.run(["fuzz", "--inject-bug", "merge-across-keyids", "--ops", "400", "--policy", "integrated",
                              "--seed", "11", "--output", fuzzFile])
        outputs.append(("fuzz terminal", fuzz.all))
        if let text = try? String(contentsOfFile: fuzzFile, encoding: .utf8) { outputs.append(("fuzz scenario", text)) }
        for (what, text) in outputs {
            #expect(Self.leaks(text).isEmpty, "\(what) holds the user key's hex")
        }
        for (what, text) in outputs where what.hasPrefix("fuzz") {
            #expect(text.range(of: #"(key|tweak)=[0-9a-fA-F]{8}"#, options: .regularExpression) == nil, "\(what) holds key hex")
        }
    }
}
