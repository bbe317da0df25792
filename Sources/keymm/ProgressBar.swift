// A progress bar on standard error for long runs (run, replay, fuzz, bench): drawn only
// when standard error is a terminal and the work has taken more than a second; never
// when output goes to a file or a pipe, so logs and CI output stay clean.
import Foundation

final class ProgressBar {
    private let label: String
    private var total: Int
    private let start = Date()
    private var lastDraw = Date.distantPast
    private var drawn = false
    private let enabled: Bool

    /// A bar for `total` units of work (bytes of a file, operations of a fuzz run).
    init(label: String, total: Int) {
        self.label = label
        self.total = max(total, 1)
        self.enabled = isatty(STDERR_FILENO) == 1 && ProcessInfo.processInfo.environment["CI"] == nil
    }

    /// Reports progress of a total known only now (a shard's calls).
    func update(_ done: Int, of total: Int) {
        self.total = max(total, 1)
        update(done)
    }

    /// Reports progress; redraws at most ten times a second, after the first second.
    func update(_ done: Int) {
        guard enabled else { return }
        let now = Date()
        guard now.timeIntervalSince(start) > 1, now.timeIntervalSince(lastDraw) > 0.1 else { return }
        lastDraw = now
        drawn = true
        let fraction = min(1, Double(done) / Double(total))
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        let line = "\r\(label) [\(bar)] \(Int(fraction * 100))%  \(String(format: "%.1f", now.timeIntervalSince(start))) s"
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Clears the bar (if one was drawn).
    func finish() {
        guard drawn else { return }
        FileHandle.standardError.write(Data(("\r" + String(repeating: " ", count: 60 + label.count) + "\r").utf8))
    }
}
