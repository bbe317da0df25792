// Output files the commands overwrite. An existing file is replaced only when it already holds
// what the command writes (a JSON result starts with `{`, JSON Lines too): a scenario or trace
// taken by mistake as an option's value (`keymm run --json a.strace b.strace` makes a.strace the
// output) is refused with exit 2 before anything runs, never overwritten.
import Foundation

/// Refuses `path` as the output of `option` when it exists and does not start like a JSON file.
func checkOverwritable(_ path: String, option: String) throws {
    guard let handle = FileHandle(forReadingAtPath: path) else { return }   // absent: nothing to lose
    defer { try? handle.close() }
    let head = (try? handle.read(upToCount: 256)) ?? Data()
    guard let first = head.first(where: { !(" \t\r\n" as String).utf8.contains($0) }) else { return }   // empty
    if first == UInt8(ascii: "{") { return }
    throw UsageError("\(option) \(path): the file exists and is not a JSON result (a scenario or trace taken as the option's value?); "
                     + "not overwritten: remove it or name another file")
}
